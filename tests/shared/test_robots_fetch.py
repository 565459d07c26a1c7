"""fetch_robots against real loopback servers, through a real pool.

The helper is written against the classic pool API. It runs here with ``crawler.http`` and with
urllib3 2.x (the API ``crawler.http`` keeps; urllib3 is in the test extra), so the redirect,
size-limit and unreachable paths are exercised over real sockets either way.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from crawler import http
from crawler.robots import MAX_ROBOTS_SIZE, UNREACHABLE_RETRY, fetch_robots

UA = "crawler/0.1.0"


class Client:
    """How to open a pool, and which exceptions mean "unreachable", for one pool library."""

    def __init__(
        self, open_pool: Callable[[str, float], Any], errors: tuple[type[BaseException], ...]
    ) -> None:
        self.open_pool = open_pool
        self.errors = errors

    def fetch(self, url: str, *, pool: Any = None, **kw: Any) -> Any:
        own = pool is None
        if own:
            pool = self.open_pool(url, 5.0)
        try:
            return fetch_robots(
                pool,
                url,
                user_agent=UA,
                timeout=kw.pop("timeout", 5.0),
                crawl_delay_max=kw.pop("crawl_delay_max", 30.0),
                open_pool=self.open_pool,
                errors=self.errors,
                **kw,
            )
        finally:
            if own:
                pool.close()


def _crawler_http() -> Client:
    return Client(
        lambda url, t: http.connection_from_url(url, timeout=t, maxsize=1),
        (http.HTTPError, OSError),
    )


def _urllib3() -> Client:
    return Client(
        lambda url, t: urllib3.connection_from_url(url, timeout=t, maxsize=1),
        (urllib3.exceptions.HTTPError, OSError),
    )


@pytest.fixture(params=["crawler.http", "urllib3"])
def client(request: pytest.FixtureRequest) -> Client:
    return _crawler_http() if request.param == "crawler.http" else _urllib3()


def _server(host: str) -> Iterator[HTTPServer]:
    server = HTTPServer(host=host, port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


@pytest.fixture
def site() -> Iterator[HTTPServer]:
    yield from _server("127.0.0.1")


@pytest.fixture
def other_site() -> Iterator[HTTPServer]:
    yield from _server("127.0.0.2")


def test_rules_are_fetched_with_our_user_agent(client: Client, site: HTTPServer) -> None:
    site.expect_request("/robots.txt").respond_with_data(
        "User-agent: crawler\nDisallow: /private\nCrawl-delay: 1.5\n"
        f"Sitemap: {site.url_for('/sitemap.xml')}\n",
        content_type="text/plain",
    )
    before = time.time()
    p = client.fetch(site.url_for("/some/page"))
    assert p.kind == "rules" and p.status == 200
    assert before <= p.fetched_at <= time.time()
    assert p.allows(site.url_for("/public")) and not p.allows(site.url_for("/private/x"))
    assert p.crawl_delay == 1.5
    assert p.sitemaps == (site.url_for("/sitemap.xml"),)
    [(request, _)] = site.log
    assert request.headers["User-Agent"] == UA


@pytest.mark.parametrize(("status", "kind"), [(404, "allow_all"), (403, "allow_all")])
def test_4xx_allows_all(client: Client, site: HTTPServer, status: int, kind: str) -> None:
    site.expect_request("/robots.txt").respond_with_data("nope", status=status)
    p = client.fetch(site.url_for("/"))
    assert (p.kind, p.status) == (kind, status)
    assert p.allows(site.url_for("/anything"))


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_disallows_for_now(client: Client, site: HTTPServer, status: int) -> None:
    # The error page "allows" everything; it must not be parsed as rules.
    site.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n", status)
    p = client.fetch(site.url_for("/"), now=lambda: 1000.0)
    assert (p.kind, p.status) == ("disallow_all", status)
    assert not p.allows(site.url_for("/page"))
    assert p.retry_at == 1000.0 + UNREACHABLE_RETRY


def test_refused_connection_is_unreachable(client: Client) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = client.fetch(f"http://127.0.0.1:{port}/")
    assert (p.kind, p.status) == ("disallow_all", None)
    assert p.unreachable


def test_read_timeout_is_unreachable(client: Client, site: HTTPServer) -> None:
    def slow(_request: Request) -> Response:
        time.sleep(1.0)
        return Response("User-agent: *\nAllow: /\n")

    site.expect_request("/robots.txt").respond_with_handler(slow)
    p = client.fetch(site.url_for("/"), timeout=0.2)
    assert (p.kind, p.status) == ("disallow_all", None)


def test_redirect_to_another_host_is_followed(
    client: Client, site: HTTPServer, other_site: HTTPServer
) -> None:
    site.expect_request("/robots.txt").respond_with_data(
        "", status=301, headers={"Location": other_site.url_for("/robots.txt")}
    )
    other_site.expect_request("/robots.txt").respond_with_data("User-agent: *\nDisallow: /admin\n")
    p = client.fetch(site.url_for("/"))
    assert p.kind == "rules"
    # The rules apply to the original host (RFC 9309 2.3.1.2).
    assert not p.allows(site.url_for("/admin/x"))
    assert p.allows(site.url_for("/news"))
    assert len(other_site.log) == 1


def _chain(site: HTTPServer, hops: int) -> None:
    site.expect_request("/robots.txt").respond_with_data(
        "", status=302, headers={"Location": "/r/1"}
    )
    for i in range(1, hops):
        site.expect_request(f"/r/{i}").respond_with_data(
            "", status=307, headers={"Location": f"/r/{i + 1}"}
        )
    site.expect_request(f"/r/{hops}").respond_with_data("User-agent: *\nDisallow: /\n")


def test_five_redirects_are_followed(client: Client, site: HTTPServer) -> None:
    _chain(site, 5)
    p = client.fetch(site.url_for("/"))
    assert p.kind == "rules" and not p.allows(site.url_for("/x"))
    assert len(site.log) == 6


def test_more_than_five_redirects_means_unavailable(client: Client, site: HTTPServer) -> None:
    _chain(site, 6)
    p = client.fetch(site.url_for("/"))
    assert (p.kind, p.status) == ("allow_all", 307)
    assert len(site.log) == 6  # the seventh request is never made


def test_redirect_to_another_scheme_is_not_followed(client: Client, site: HTTPServer) -> None:
    site.expect_request("/robots.txt").respond_with_data(
        "", status=302, headers={"Location": "ftp://127.0.0.1/robots.txt"}
    )
    p = client.fetch(site.url_for("/"))
    assert p.kind == "allow_all"


def test_huge_robots_is_cut_at_500_kib(client: Client, site: HTTPServer) -> None:
    line = b"Disallow: /x" + b"y" * 87 + b"\n"  # 100 bytes
    body = b"User-agent: *\nDisallow: /first\n" + line * (2 * MAX_ROBOTS_SIZE // len(line))
    body += b"Disallow: /\n"  # far past the limit: never read
    site.expect_request("/robots.txt").respond_with_data(body, content_type="text/plain")
    p = client.fetch(site.url_for("/"))
    assert p.kind == "rules"
    assert len(p.text) <= MAX_ROBOTS_SIZE
    assert not p.allows(site.url_for("/first"))
    assert p.allows(site.url_for("/other"))
