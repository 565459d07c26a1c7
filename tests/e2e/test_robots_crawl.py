"""robots.txt, Crawl-delay and Retry-After in real crawls (loopback servers, rows in the
database; on both backends: ``crawl_db``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from tests.kit.crawl import TitleSpider, page, rows
from tests.kit.servers import ConcurrencyServer, MisbehavingServer
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

FAST = Settings(workers=2, timeout=5, retries=1)


def paths_of(site: Site, host: str) -> list[str]:
    return [path for h, path, _headers, _t in site.requests if h == host]


@pytest.mark.timeout(60)
def test_robots_obeyed_fetched_first_once_and_cached_across_runs(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    b_routes: dict[str, Any] = {
        # A 4xx means "no rules" (RFC 9309), even 403 with a body that disallows everything.
        "/robots.txt": (403, {"Content-Type": "text/plain"}, "User-agent: *\nDisallow: /\n"),
        "/": page("b", ["/b1"]),
        "/b1": page("b1", []),
    }
    b = site.add_host("127.0.0.3", b_routes)
    rules = "User-agent: *\nDisallow: /private\n\nUser-agent: other\nDisallow: /\n"
    a_routes: dict[str, Any] = {
        "/robots.txt": (200, {"Content-Type": "text/plain"}, rules),
        "/": page("home", ["/a1", "/private/x", "/private", f"http://{b}/"]),
        "/a1": page("a1", ["/private/y"]),
        "/private/x": page("secret", []),
    }
    a = site.add_host("127.0.0.2", a_routes)
    db = crawl_db("r")
    kwargs = {"start_urls": f"http://{a}/", "allowed_domains": "127.0.0.2 127.0.0.3"}
    settings = FAST.replace(per_host=2)

    first = crawl(TitleSpider, settings=settings, db_path=db, spider_kwargs=kwargs)

    assert first.exit_code == 0, first
    for host in (a, b):
        seen = paths_of(site, host)
        assert seen[0] == "/robots.txt", seen
        assert seen.count("/robots.txt") == 1
    assert not any(p.startswith("/private") for p in paths_of(site, a))
    assert {u for (u,) in rows(db, "SELECT url FROM pages")} == {
        f"http://{a}/",
        f"http://{a}/a1",
        f"http://{b}/",
        f"http://{b}/b1",
    }
    denied = rows(db, "SELECT url, kind FROM errors ORDER BY url")
    assert denied == [
        (f"http://{a}/private", "robots"),
        (f"http://{a}/private/x", "robots"),
        (f"http://{a}/private/y", "robots"),
    ]
    assert first.stats["robots_denied"] == 3
    assert first.stats["errors"] == 0  # a disallowed URL is not an error of the crawl
    assert first.stats["robots_fetched"] == 2
    # The robots.txt request went out with the crawler's User-Agent.
    ua = [hd.get("user-agent") for h, p, hd, _ in site.requests if p == "/robots.txt"]
    assert ua == [settings.user_agent] * 2
    stored = dict(rows(db, "SELECT host, kind FROM robots"))
    assert stored == {a: "rules", b: "allow_all"}

    # A second run within 24 h reads the policies from the database: no robots.txt request.
    second = crawl(TitleSpider, settings=settings, db_path=db, spider_kwargs=kwargs)
    assert second.exit_code == 0
    assert site.hits[(a, "/robots.txt")] == 1 and site.hits[(b, "/robots.txt")] == 1
    assert second.stats["robots_fetched"] == 0
    assert site.hits[(a, "/")] == 2  # the start URL is always asked for again


@pytest.mark.timeout(60)
def test_robots_5xx_keeps_the_host_queued_and_the_next_run_retries(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    state = {"robots": (503, {}, "try later")}
    a_routes: dict[str, Any] = {
        "/robots.txt": lambda _path: state["robots"],
        "/": page("a", ["/a1"]),
        "/a1": page("a1", []),
    }
    a = site.add_host("127.0.0.2", a_routes)
    b = site.add_host("127.0.0.3", {"/": page("b", ["/b1"]), "/b1": page("b1", [])})
    db = crawl_db("u")
    kwargs = {"start_urls": f"http://{a}/ http://{b}/", "allowed_domains": "127.0.0.2 127.0.0.3"}

    first = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)

    # The other host finished; this one waits, with its URL still queued, for the next run.
    assert (first.exit_code, first.finish_reason) == (4, "robots.txt unreachable")
    assert paths_of(site, a) == ["/robots.txt"]
    assert {u for (u,) in rows(db, "SELECT url FROM pages")} == {f"http://{b}/", f"http://{b}/b1"}
    assert rows(db, "SELECT state FROM frontier WHERE url = ?", f"http://{a}/") == [("queued",)]
    assert rows(db, "SELECT kind, status FROM robots WHERE host = ?", a) == [("disallow_all", 503)]

    # A new run asks again at its start, even within the retry interval (the backoff is for
    # retries within one run): still 503, so it waits again.
    second = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert (second.exit_code, second.finish_reason) == (4, "robots.txt unreachable")
    assert site.hits[(a, "/robots.txt")] == 2

    # The operator fixes the server; the next run, minutes later, asks again and crawls.
    state["robots"] = (200, {"Content-Type": "text/plain"}, "User-agent: *\nAllow: /\n")
    third = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert third.exit_code == 0, third
    assert site.hits[(a, "/robots.txt")] == 3
    assert {f"http://{a}/", f"http://{a}/a1"} <= {u for (u,) in rows(db, "SELECT url FROM pages")}


@pytest.mark.timeout(60)
def test_crawl_delay_spaces_request_starts(crawl_db: Callable[[str], Path | str]) -> None:
    delay = 0.35
    with ConcurrencyServer(("127.0.0.2",)) as server:
        links = "".join(f'<a href="/p{i}">p</a>' for i in range(4))
        server.pages = {
            "/robots.txt": f"User-agent: *\nCrawl-delay: {delay}\n".encode(),
            "/": f"<html><body>{links}</body></html>".encode(),
        }
        db = crawl_db("cd")
        result = crawl(
            TitleSpider,
            settings=FAST.replace(per_host=2),
            db_path=db,
            spider_kwargs={"start_urls": server.url("/")},
        )
        arrivals = list(server.arrivals)
    assert result.exit_code == 0
    assert [a.path for a in arrivals][:2] == ["/robots.txt", "/"]
    assert len(arrivals) == 6
    times = sorted(a.time for a in arrivals)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # A hard minimum between request starts (a little slack for when the server reads them).
    assert min(gaps) >= delay * 0.9, gaps


@pytest.mark.timeout(60)
def test_retry_after_pushes_the_whole_host(crawl_db: Callable[[str], Path | str]) -> None:
    with MisbehavingServer() as server:
        starts = " ".join(
            [server.url("/flaky?fail=1&status=429&retry_after=2")]
            + [server.url(f"/ok?n={i}") for i in range(3)]
        )
        result = crawl(
            TitleSpider,
            settings=FAST.replace(workers=1, per_host=1, robots=False),
            db_path=crawl_db("ra"),
            spider_kwargs={"start_urls": starts},
        )
        arrivals = list(server.arrivals)
    assert result.exit_code == 0
    assert arrivals[0].path == "/flaky"
    first = arrivals[0].time
    # Nothing else went to that host before Retry-After passed (the politeness backoff
    # after one failure alone would be 0.5 s).
    assert all(a.time >= first + 1.9 for a in arrivals[1:]), [
        (a.target, round(a.time - first, 2)) for a in arrivals
    ]
    assert len(arrivals) == 5  # the 429 retried once, three /ok
