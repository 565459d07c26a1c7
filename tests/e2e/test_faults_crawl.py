"""The engine against every misbehaving-server scenario at once, next to a healthy site.

One crawl starts from a hub page on a healthy multi-host site (conftest ``site``); the hub links
to the healthy hosts and to every ``tests/kit/servers.py`` scenario. Each scenario is served from
its own loopback address (one ``MisbehavingServer`` listening on many 127.0.0.x at one port),
so each is its own host: a host that keeps failing is backed off by politeness, and a 503 with
``Retry-After`` pushes back only its own host. The assertions are on rows in the database, on
what the servers received, and on the run's stats. The crawl runs once per backend (``outcome``
is parametrized: SQLite, then PostgreSQL), each against its own server, so what a server
received is what one crawl sent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from crawler.engine import crawl
from crawler.messages import Job
from crawler.settings import Settings
from crawler.spider import Response, Spider
from crawler.urls import fingerprint, url_host
from crawler.worker.runner import JobRunner
from tests.kit.crawl import page, rows
from tests.kit.servers import MisbehavingServer, gzip_bomb, nested_bomb
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

# path -> what must become of it: ("error", kinds), ("page", status), or ("bounded", note).
# Each scenario gets its own address, 127.0.0.(FIRST + index).
FIRST = 20
SCENARIOS: list[tuple[str, str, Any]] = [
    ("/reset-before-status", "error", {"reset", "protocol"}),
    ("/reset-mid-body", "error", {"reset", "protocol"}),
    ("/close-after-headers", "error", {"protocol"}),
    ("/short-body", "error", {"protocol"}),
    ("/bad-chunked", "error", {"protocol"}),
    ("/chunked-truncated", "error", {"protocol"}),
    ("/garbage-status", "error", {"protocol"}),
    ("/http09", "error", {"protocol"}),
    ("/huge-header", "error", {"protocol"}),
    ("/many-headers", "error", {"protocol"}),
    ("/never-answer?hold=20", "error", {"timeout"}),
    ("/trickle?interval=0.25&bytes=24", "page", 200),  # 6 s of slowloris, under the timeout
    ("/trickle?interval=0.25&bytes=24&part=head", "page", 200),
    ("/endless", "too_large", None),
    ("/endless?framing=close", "too_large", None),
    ("/gzip-bomb", "too_large", None),
    ("/nested-bomb", "too_large", None),
    ("/nested-encoding", "page", 200),
    ("/bad-gzip", "error", {"decode"}),
    ("/links?n=100000", "page", 200),
    ("/long-url?length=65536", "page", 200),
    ("/utf16", "page", 200),
    ("/bad-utf8", "page", 200),
    ("/cal/2024-01-01", "page", 200),
    ("/redirect-loop", "page", 302),
    ("/redirect-chain/50", "page", 302),
    ("/redirect-file", "redirect", None),
    ("/redirect-ftp", "redirect", None),
    ("/redirect-javascript", "redirect", None),
    ("/redirect-crlf", "crlf", None),
    ("/redirect-cr", "crlf", None),
    ("/redirect-crlf-encoded", "page", 302),
    ("/flaky?fail=1", "page", 200),
    ("/unavailable?retry_after=3600", "queued", None),
]
ADDRESSES = tuple(f"127.0.0.{FIRST + i}" for i in range(len(SCENARIOS)))
HEALTHY = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PAGES_PER_HOST = 15
MAX_DEPTH = 6
MAX_LINKS = 300
MAX_BODY = 4 << 20  # the 100,000-link page is about 3 MB
PARENT_GROWTH = -1  # key of the parent's RSS growth in the peak-memory samples

SETTINGS = Settings(
    workers=2,
    per_host=2,
    timeout=1,
    retries=1,
    robots=False,
    sitemaps=False,
    max_depth=MAX_DEPTH,
    max_links_per_page=MAX_LINKS,
    max_body_size=MAX_BODY,
)


class EverySpider(Spider):
    name = "faults"
    allowed_domains: list[str] | None = []  # empty: every host is allowed

    def parse(self, response: Response) -> Any:
        yield {
            "url": response.url,
            "title": response.css("title::text").get(),
            "n": len(response.text),
        }
        yield from response.links()


class Clocked:
    """A route that records when each healthy page was served."""

    def __init__(self, body: str, times: list[float]) -> None:
        self.body, self.times = body, times

    def __call__(self, path: str) -> tuple[int, dict[str, str], str]:
        self.times.append(time.monotonic())
        time.sleep(0.01)
        return 200, {}, self.body


def private_kib(pid: int) -> int:
    """Memory only this process holds (USS): a forked worker also maps the pytest parent's
    pages copy-on-write, which VmRSS counts although the worker did not allocate them."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def serve_scenarios() -> MisbehavingServer:
    # Building the bombs takes about a second of CPU (a CRC over 1 GiB); built inside the
    # first request it could outlast the crawl's 1 s timeout on a busy machine, and the page
    # would count as a timeout instead of too_large. (Cached: built once per session.)
    gzip_bomb(), nested_bomb()
    return MisbehavingServer(ADDRESSES, lifetime=180)


@pytest.fixture(scope="module")
def bad() -> Iterator[MisbehavingServer]:
    """The scenarios for the tests that crawl (or fetch) by themselves."""
    with serve_scenarios() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Run the crawl once per backend; the tests below each check one part of what it left
    behind. Its own server (``outcome["bad"]``): the tests count what that server received."""
    times: list[float] = []
    with Site() as site, serve_scenarios() as bad:
        hosts: list[str] = []
        for address in HEALTHY:
            routes: dict[str, Any] = {}
            hosts.append(site.add_host(address, routes))
            for i in range(PAGES_PER_HOST):
                routes[f"/h{i}"] = Clocked(page(f"{address} {i}", [f"/h{(i + 1) % 15}"]), times)
        scenario_urls = [bad.url(path, ADDRESSES[i]) for i, (path, *_r) in enumerate(SCENARIOS)]
        healthy_urls = [f"http://{h}/h{i}" for h in hosts for i in range(PAGES_PER_HOST)]
        # The hub sits on the first healthy host; the healthy pages are listed first.
        site.servers[0].routes["/"] = page("hub", healthy_urls + scenario_urls)
        db: Path | str
        if request.param == "postgres":
            db = request.getfixturevalue("postgres").database()
        else:
            db = tmp_path_factory.mktemp("faults") / "faults.db"
        peak: dict[int, int] = {}
        # The parent is this pytest process, whose size depends on every test that ran before
        # it, so only its growth during the crawl is measured; workers by their private memory.
        parent_base = rss_kib(os.getpid())

        def progress(snapshot: dict[str, Any]) -> None:
            for child in multiprocess.active_children():
                peak[child.pid] = max(peak.get(child.pid, 0), private_kib(child.pid))
            grown = rss_kib(os.getpid()) - parent_base
            peak[PARENT_GROWTH] = max(peak.get(PARENT_GROWTH, 0), grown)

        started = time.monotonic()
        result = crawl(
            EverySpider,
            settings=SETTINGS,
            db_path=db,
            spider_kwargs={"start_urls": f"http://{hosts[0]}/"},
            on_progress=progress,
        )
        yield {
            "result": result,
            "db": db,
            "hosts": hosts,
            "healthy_times": list(times),
            "started": started,
            "elapsed": time.monotonic() - started,
            "peak_kib": peak,
            "site": site,
            "bad": bad,
        }


def url_of(bad: MisbehavingServer, index: int) -> str:
    path = SCENARIOS[index][0]
    return bad.url(path, ADDRESSES[index])


def errors_for(db: Path | str, url: str) -> list[str]:
    return [k for (k,) in rows(db, "SELECT kind FROM errors WHERE url = ? ORDER BY id", url)]


@pytest.mark.timeout(120)
def test_run_ends_sensibly_with_no_dead_worker(outcome: dict[str, Any]) -> None:
    result = outcome["result"]
    # Everything is done except the URL whose host asked for an hour's pause: the run ends
    # instead of sleeping, with work left (exit 4), and the URL stays queued for the next run.
    assert (result.exit_code, result.finish_reason) == (4, "deferred"), result
    assert result.stats["dead_workers"] == 0
    assert outcome["elapsed"] < 60
    db = outcome["db"]
    assert rows(db, "SELECT state, count(*) FROM frontier WHERE state NOT IN ('done', 'failed')"
                " GROUP BY state") == [("queued", 1)]  # fmt: skip
    (run,) = rows(db, "SELECT exit_code, finish_reason, finished_at IS NOT NULL FROM runs")
    assert run == (4, "deferred", 1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s[0] for s in SCENARIOS])
def test_each_scenario_is_an_error_row_or_a_bounded_result(
    outcome: dict[str, Any], index: int
) -> None:
    bad = outcome["bad"]
    db = outcome["db"]
    _path, expect, detail = SCENARIOS[index]
    url = url_of(bad, index)
    status = rows(db, "SELECT status, size FROM pages WHERE url = ?", url)
    kinds = errors_for(db, url)
    state = rows(db, "SELECT state FROM frontier WHERE url = ?", url)
    if expect == "error":
        assert status == [] and len(kinds) == 1 and kinds[0] in detail, (status, kinds)
        assert state == [("failed",)]
    elif expect == "page":
        assert [s for s, _ in status] == [detail] and kinds == [], (status, kinds)
        assert state == [("done",)]
    elif expect == "too_large":
        # Cut at max_body_size: either the page row keeps what was read, or the pool's
        # decoded-size guard stopped it first; either way one too_large row.
        assert kinds == ["too_large"], kinds
        assert all(size <= MAX_BODY for _, size in status)
    elif expect == "redirect":
        assert [s for s, _ in status] == [302] and kinds == ["redirect"], (status, kinds)
    elif expect == "crlf":
        # A bare CR in Location is refused (a redirect error). An obs-folded Location is
        # unfolded by the parser to "/ok X-Injected: yes" and followed percent-encoded, as a
        # browser would; either way no request carries an injected header (checked below).
        assert len(kinds) <= 1 and set(kinds) <= {"redirect", "protocol"}, (status, kinds)
        for (location,) in rows(db, "SELECT location FROM pages WHERE url = ?", url):
            assert location is None or not any(c in location for c in " \r\n"), location
    elif expect == "queued":
        assert state == [("queued",)]
    else:  # pragma: no cover
        raise AssertionError(expect)


@pytest.mark.timeout(120)
def test_healthy_hosts_complete_while_slow_peers_are_pending(outcome: dict[str, Any]) -> None:
    bad = outcome["bad"]
    db = outcome["db"]
    for host in outcome["hosts"]:
        got = rows(db, "SELECT count(*) FROM pages WHERE url LIKE ? AND status = 200",
                   f"http://{host}/h%")  # fmt: skip
        assert got == [(PAGES_PER_HOST,)]
    assert rows(db, "SELECT count(*), count(DISTINCT page_url) FROM items WHERE page_url LIKE"
                " 'http://127.0.0._:%/h%'") == [(45, 45)]  # fmt: skip
    # The last healthy page was served while the slowloris responses were still trickling:
    # their host's slow peer never held up the other hosts.
    last_healthy = max(outcome["healthy_times"])
    trickles = [a for a in bad.arrivals if a.path == "/trickle"]
    assert trickles
    assert all(last_healthy < a.time + 5.0 for a in trickles), (
        last_healthy - outcome["started"],
        [a.time - outcome["started"] for a in trickles],
    )
    never = [a for a in bad.arrivals if a.path == "/never-answer"]
    assert last_healthy - outcome["started"] < 5.0
    assert never and never[0].time - outcome["started"] < 5.0


@pytest.mark.timeout(120)
def test_memory_stays_bounded(outcome: dict[str, Any]) -> None:
    # A 1 GiB gzip bomb, a 4 GiB nested one and two endless bodies went through the workers.
    peak = dict(outcome["peak_kib"])
    parent_growth = peak.pop(PARENT_GROWTH, None)
    assert peak and parent_growth is not None, "no RSS samples"
    assert max(peak.values()) < 200 * 1024, peak  # each worker's private memory
    assert parent_growth < 100 * 1024, parent_growth
    stats = outcome["result"].stats
    assert stats["bytes"] < 20 * MAX_BODY
    assert stats["errors_by_kind"]["too_large"] >= 4


@pytest.mark.timeout(120)
def test_link_url_and_depth_limits(outcome: dict[str, Any]) -> None:
    bad = outcome["bad"]
    db = outcome["db"]
    links_host = ADDRESSES[[s[0] for s in SCENARIOS].index("/links?n=100000")]
    # The 100,000-link page: cut at max_links_per_page; the rest counted as skipped.
    followed = rows(db, "SELECT count(*) FROM frontier WHERE url LIKE ?",
                    f"http://{links_host}:%/links/%")  # fmt: skip
    assert followed == [(MAX_LINKS,)]
    stats = outcome["result"].stats
    assert stats["skipped_urls"] >= 100_000 - MAX_LINKS + 1  # + the 64 KB URL
    # The 64 KB URL is never queued nor requested.
    assert rows(db, "SELECT count(*) FROM frontier WHERE length(url) > 2083") == [(0,)]
    assert bad.count("/long/" + "a" * (65536 - 6)) == 0
    # The endless calendar stops at max_depth: depth 1 (linked from the hub) to MAX_DEPTH.
    cal = rows(db, "SELECT depth FROM pages WHERE url LIKE '%/cal/%' ORDER BY depth")
    assert [d for (d,) in cal] == list(range(1, MAX_DEPTH + 1))
    assert sum(1 for a in bad.arrivals if a.path.startswith("/cal/")) == MAX_DEPTH


@pytest.mark.timeout(120)
def test_redirect_limits(outcome: dict[str, Any]) -> None:
    bad = outcome["bad"]
    db = outcome["db"]
    # A chain of 50: the default max_redirects (20) lets /50 .. /30 be fetched, then stops.
    chain = [a for a in bad.arrivals if a.path.startswith("/redirect-chain/")]
    assert len(chain) == 21 and Settings().max_redirects == 20
    host = ADDRESSES[[s[0] for s in SCENARIOS].index("/redirect-chain/50")]
    assert errors_for(db, bad.url("/redirect-chain/30", host)) == ["redirect"]
    # A loop ends at deduplication: one fetch.
    assert bad.count("/redirect-loop") == 1
    # Nothing but http(s) ever reached the frontier.
    schemes = rows(db, "SELECT count(*) FROM frontier WHERE url NOT LIKE 'http%'")
    assert schemes == [(0,)]
    assert rows(db, "SELECT count(*) FROM pages WHERE location NOT LIKE 'http%'") == [(0,)]


@pytest.mark.timeout(120)
def test_no_request_carries_an_injected_header(outcome: dict[str, Any]) -> None:
    bad = outcome["bad"]
    for arrival in bad.arrivals:
        assert arrival.header("X-Injected") is None, arrival.head
        for line in arrival.head.split(b"\r\n")[1:]:
            assert not line.lower().startswith(b"x-injected"), arrival.head
            assert b"\r" not in line and b"\n" not in line
    # The percent-encoded CR LF stays encoded in the request target.
    encoded = [a for a in bad.arrivals if a.path.startswith("/ok%0D%0A")]
    assert [a.target for a in encoded] == ["/ok%0D%0AX-Injected:%20yes"]


@pytest.mark.timeout(120)
def test_text_in_any_encoding_becomes_items(outcome: dict[str, Any]) -> None:
    bad = outcome["bad"]
    db = outcome["db"]
    for path in ("/utf16", "/bad-utf8"):
        index = [s[0] for s in SCENARIOS].index(path)
        url = url_of(bad, index)
        items = rows(db, "SELECT n FROM items WHERE page_url = ?", url)
        assert len(items) == 1 and items[0][0] > 0
        assert errors_for(db, url) == []
        # Each links to /ok on its own host, which was followed.
        ok = bad.url("/ok", ADDRESSES[index])
        assert rows(db, "SELECT status FROM pages WHERE url = ?", ok) == [(200,)]
    utf16 = url_of(bad, [s[0] for s in SCENARIOS].index("/utf16"))
    (title,) = rows(db, "SELECT title FROM items WHERE page_url = ?", utf16)
    assert title == ("t",)


# -- limits checked on their own -----------------------------------------------------------


class CalendarSpider(Spider):
    name = "calendar"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}
        yield from response.links()


@pytest.mark.timeout(60)
def test_endless_calendar_is_bounded_by_max_pages(
    bad: MisbehavingServer, crawl_db: Callable[[str], Path | str]
) -> None:
    db = crawl_db("cal")
    result = crawl(
        CalendarSpider,
        settings=Settings(workers=1, timeout=2, robots=False, sitemaps=False, max_pages=25),
        db_path=db,
        spider_kwargs={"start_urls": bad.url("/cal/2030-01-01", ADDRESSES[0])},
    )
    assert (result.exit_code, result.finish_reason) == (4, "max_pages")
    assert rows(db, "SELECT count(*), max(depth) FROM pages") == [(25, 24)]
    assert rows(db, "SELECT count(*) FROM frontier WHERE state = 'queued'") == [(1,)]


@pytest.mark.timeout(30)
def test_slowloris_hits_the_whole_response_deadline(bad: MisbehavingServer) -> None:
    # A peer that sends a byte just inside every read timeout is cut by the whole-response
    # deadline (max(60 s, 4 * timeout)); the clock is injected so the test does not wait.
    ticks = iter(range(0, 10_000, 25))
    worker = JobRunner(
        CalendarSpider(), Settings(timeout=1, retries=3), clock=lambda: float(next(ticks))
    )
    try:
        url = bad.url("/trickle?interval=0.05&bytes=40", ADDRESSES[0])
        out = worker.process(Job(fingerprint(url), url, url_host(url)))
    finally:
        worker.close()
    assert worker.body_deadline == 60.0
    assert out.state == "failed" and out.page is None  # not retried: it would trickle again
    assert [f.kind for f in out.failures] == ["timeout"]
    assert "not complete after 60s" in out.failures[0].message


def test_limit_defaults_are_sane() -> None:
    s = Settings()
    assert (s.max_redirects, s.max_url_length, s.max_links_per_page) == (20, 2083, 10000)
    assert s.max_body_size == 10 * 2**20 and s.timeout == 30 and s.retries == 3
    assert (s.max_depth, s.max_pages, s.max_items, s.max_runtime) == (0, 0, 0, 0)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("part", ["body", "head"])
def test_slowloris_is_cut_by_the_pool_at_the_deadline(bad: MisbehavingServer, part: str) -> None:
    # The real clock this time: the pool's Timeout.total ends the trickle (a byte every 0.2 s,
    # well inside the 1 s read timeout) at the whole-response deadline, in the head or the body.
    worker = JobRunner(CalendarSpider(), Settings(timeout=1, retries=3), body_deadline=2.0)
    try:
        url = bad.url(f"/trickle?interval=0.2&bytes=100&part={part}", ADDRESSES[0])
        started = time.monotonic()
        out = worker.process(Job(fingerprint(url), url, url_host(url)))
        elapsed = time.monotonic() - started
        (pool,) = worker._pools.values()
        assert pool.num_in_use == 0
    finally:
        worker.close()
    assert 1.9 <= elapsed < 3.0
    assert out.state == "failed" and out.page is None  # not retried: it would trickle again
    assert [f.kind for f in out.failures] == ["timeout"]
    assert "not complete after 2s" in out.failures[0].message
