"""crawler.worker.runner.JobRunner in-process against loopback servers that misbehave on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.messages import Job
from crawler.settings import Settings
from crawler.spider import Response, Spider
from crawler.urls import fingerprint, url_host
from crawler.worker import callbacks, runner
from crawler.worker.runner import JobRunner
from tests.kit.servers import LOOPBACK, MisbehavingServer

NOW = 1_000_000.0


class LinkSpider(Spider):
    name = "links"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}
        yield from response.links()


@pytest.fixture(scope="module")
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as s:
        yield s


def make_worker(**settings: Any) -> Iterator[JobRunner]:
    base = Settings(timeout=2, retries=2, max_body_size=1 << 20).replace(**settings)
    worker = JobRunner(LinkSpider(), base, clock=lambda: NOW, rand=lambda: 0.5)
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture
def worker() -> Iterator[JobRunner]:
    yield from make_worker()


def job(server: MisbehavingServer, path: str, **kw: Any) -> Job:
    url = server.url(path)
    return Job(fp=fingerprint(url), url=url, host=url_host(url), **kw)


@pytest.mark.timeout(30)
def test_links_become_follow_tuples(server: MisbehavingServer, worker: JobRunner) -> None:
    out = worker.process(job(server, "/links?n=50", depth=2))
    assert out.state == "done" and out.page is not None and out.page.status == 200
    assert out.items == ({"url": server.url("/links?n=50")},)
    assert len(out.follows) == 50
    fp, url, host = out.follows[7]
    assert url == server.url("/links/7") and fp == fingerprint(url) and host == url_host(url)


@pytest.mark.timeout(30)
def test_link_limits_skip_and_count(server: MisbehavingServer) -> None:
    for w in make_worker(max_links_per_page=10):
        out = w.process(job(server, "/links?n=500"))
        assert len(out.follows) == 10 and out.skipped_urls == 490
    for w in make_worker(max_url_length=200):
        out = w.process(job(server, "/long-url?length=5000"))
        assert out.follows == () and out.skipped_urls == 1
    for w in make_worker(max_depth=2):
        out = w.process(job(server, "/links?n=5", depth=2))
        assert out.follows == () and out.skipped_urls == 0  # pruned, not skipped


@pytest.mark.timeout(30)
def test_a_link_already_sent_by_this_worker_is_not_sent_again(server: MisbehavingServer) -> None:
    for w in make_worker(store_links=True):
        first = w.process(job(server, "/links?n=50"))
        assert len(first.follows) == 50
        # Another page with five of the same links: nothing new to tell the parent, which
        # would ignore them; the page's own links are still all there.
        again = w.process(job(server, "/links?n=5"))
        assert again.follows == () and again.skipped_urls == 0
        assert again.links == tuple(server.url(f"/links/{i}") for i in range(5))
        assert "50 sent" in repr(w.callbacks)


@pytest.mark.timeout(30)
def test_the_sent_links_cache_keeps_what_pages_still_link_to_when_full(
    server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "_SENT_MAX", 30)
    for w in make_worker():
        assert len(w.process(job(server, "/links?n=50")).follows) == 50
        # 50 links overflowed a generation of 30: links 0-29 are in the older one, still
        # known (a cache cleared when full would send all five again).
        assert w.process(job(server, "/links?n=5")).follows == ()
        assert len(w.process(job(server, "/links?n=200")).follows) >= 150  # 50-199 are new
        sent = w.callbacks._sent, w.callbacks._sent_old
        assert all(len(generation) <= 30 for generation in sent)  # bounded: two generations


@pytest.mark.timeout(30)
def test_a_pruned_link_is_followed_from_a_shallower_page(server: MisbehavingServer) -> None:
    for w in make_worker(max_depth=2):
        assert w.process(job(server, "/links?n=5", depth=2)).follows == ()
        out = w.process(job(server, "/links?n=5", depth=0))
        assert [url for _fp, url, _host in out.follows] == [
            server.url(f"/links/{i}") for i in range(5)
        ]


@pytest.mark.timeout(30)
def test_gzip_bomb_is_cut_at_max_body_size(server: MisbehavingServer, worker: JobRunner) -> None:
    out = worker.process(job(server, "/gzip-bomb"))
    assert out.page is not None and out.page.size <= 1 << 20
    assert [f.kind for f in out.failures] == ["too_large"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", ["/redirect-file", "/redirect-ftp", "/redirect-javascript"])
def test_redirects_never_leave_http(
    server: MisbehavingServer, worker: JobRunner, path: str
) -> None:
    out = worker.process(job(server, path))
    assert out.state == "done" and out.requests == ()
    assert out.page is not None and out.page.status == 302 and out.page.location is None
    assert [f.kind for f in out.failures] == ["redirect"]


@pytest.mark.timeout(30)
def test_redirect_becomes_a_request_with_its_hops(
    server: MisbehavingServer, worker: JobRunner
) -> None:
    out = worker.process(job(server, "/redirect-chain/2", callback="parse_x", depth=3))
    (req,) = out.requests
    assert req.url == server.url("/redirect-chain/1") and req.callback == "parse_x"
    assert req.redirect_urls == (server.url("/redirect-chain/2"),) and req.depth == 3
    assert out.page is not None and out.page.location == req.url


@pytest.mark.timeout(30)
def test_503_with_retry_after_pushes_the_host(server: MisbehavingServer, worker: JobRunner) -> None:
    out = worker.process(job(server, "/unavailable?retry_after=3600"))
    assert out.state == "retry"
    assert out.retry_at == NOW + 3600 and out.host_not_before == NOW + 3600
    last = worker.process(job(server, "/unavailable?retry_after=3600", attempt=2))
    assert last.state == "failed" and last.page is not None and last.page.status == 503
    assert [f.kind for f in last.failures] == ["http"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("path", "kinds"),
    [
        ("/never-answer?hold=5", {"timeout"}),
        ("/reset-before-status", {"reset", "protocol"}),
        ("/garbage-status", {"protocol"}),
    ],
)
def test_broken_peers_become_failures(
    server: MisbehavingServer, path: str, kinds: set[str]
) -> None:
    for w in make_worker(retries=0, timeout=0.5):
        out = w.process(job(server, path))
        assert out.state == "failed" and out.page is None
        assert len(out.failures) == 1 and out.failures[0].kind in kinds, out.failures


@pytest.mark.timeout(30)
def test_connection_errors_are_retried_first(server: MisbehavingServer, worker: JobRunner) -> None:
    out = worker.process(job(server, "/reset-before-status"))
    assert out.state == "retry" and out.retry_at == NOW + 1.0


@pytest.mark.timeout(30)
def test_undecodable_body_still_parses(server: MisbehavingServer, worker: JobRunner) -> None:
    for path in ("/utf16", "/bad-utf8"):
        out = worker.process(job(server, path))
        assert out.state == "done" and not out.failures, out.failures


def _established_to(port: int) -> int:
    """Client sockets ESTABLISHED to loopback ``port`` (Linux ``/proc/net/tcp``)."""
    lines = Path("/proc/self/net/tcp").read_text().splitlines()[1:]
    fields = (line.split() for line in lines)
    return sum(1 for f in fields if f[3] == "01" and int(f[2].split(":")[1], 16) == port)


@pytest.mark.timeout(30)
def test_a_broad_crawl_keeps_few_pools_and_their_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    # One pool per host, kept with its idle keep-alive socket, held a socket for every host
    # a worker had ever fetched from: tens of thousands on a broad crawl.
    monkeypatch.setattr(runner, "MAX_POOLS", 8)
    with MisbehavingServer() as srv:
        names = [f"h{i}.many.test" for i in range(30)]
        for worker in make_worker(resolve={"*.many.test": LOOPBACK}):
            for name in names + names[-4:]:  # the last four again: their pools are kept
                url = f"http://{name}:{srv.port}/ok"
                out = worker.process(Job(fp=fingerprint(url), url=url, host=url_host(url)))
                assert out.state == "done" and out.page is not None and out.page.status == 200
            assert len(worker._pools) == 8
            assert [key[1] for key in worker._pools][-4:] == [f"{n}:{srv.port}" for n in names[-4:]]
            assert _established_to(srv.port) == 8  # the retired pools closed theirs
        assert srv.connections_accepted == 30  # the four hosts asked again reused theirs
