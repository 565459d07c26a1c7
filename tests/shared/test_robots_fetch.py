"""fetch_robots against real loopback servers, through a real pool.

The helper is written against the classic pool API. It runs here with ``crawler.http`` and with
urllib3 2.x (the API ``crawler.http`` keeps; urllib3 is in the test extra), so the redirect,
size-limit and unreachable paths are exercised over real sockets either way.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from crawler import http
from crawler.robots import MAX_ROBOTS_SIZE, UNREACHABLE_RETRY, fetch_robots
from tests.kit.site import Reply, Route, Site

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


def serve(site: Site, routes: dict[str, Route], address: str = "127.0.0.1") -> Callable[[str], str]:
    """Serve ``routes`` on a new host of ``site``; return that host's ``url(path)``.

    The server keeps the dict it was given, so routes added afterwards are served too.
    """
    host = site.add_host(address, routes)
    return lambda path: f"http://{host}{path}"


def requests_to(site: Site, url: Callable[[str], str]) -> list[dict[str, str]]:
    """The headers of every request that the host behind ``url`` received, in order."""
    host = url("").removeprefix("http://")
    return [headers for h, _path, headers, _ in site.requests if h == host]


def test_rules_are_fetched_with_our_user_agent(client: Client, site: Site) -> None:
    routes: dict[str, Route] = {}
    url = serve(site, routes)
    routes["/robots.txt"] = (
        200,
        {"Content-Type": "text/plain"},
        "User-agent: crawler\nDisallow: /private\nCrawl-delay: 1.5\n"
        f"Sitemap: {url('/sitemap.xml')}\n",
    )
    before = time.time()
    p = client.fetch(url("/some/page"))
    assert p.kind == "rules" and p.status == 200
    assert before <= p.fetched_at <= time.time()
    assert p.allows(url("/public")) and not p.allows(url("/private/x"))
    assert p.crawl_delay == 1.5
    assert p.sitemaps == (url("/sitemap.xml"),)
    [headers] = requests_to(site, url)
    assert headers["user-agent"] == UA


@pytest.mark.parametrize(("status", "kind"), [(404, "allow_all"), (403, "allow_all")])
def test_4xx_allows_all(client: Client, site: Site, status: int, kind: str) -> None:
    url = serve(site, {"/robots.txt": (status, {}, "nope")})
    p = client.fetch(url("/"))
    assert (p.kind, p.status) == (kind, status)
    assert p.allows(url("/anything"))


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_disallows_for_now(client: Client, site: Site, status: int) -> None:
    # The error page "allows" everything; it must not be parsed as rules.
    url = serve(site, {"/robots.txt": (status, {}, "User-agent: *\nAllow: /\n")})
    p = client.fetch(url("/"), now=lambda: 1000.0)
    assert (p.kind, p.status) == ("disallow_all", status)
    assert not p.allows(url("/page"))
    assert p.retry_at == 1000.0 + UNREACHABLE_RETRY


def test_refused_connection_is_unreachable(client: Client) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = client.fetch(f"http://127.0.0.1:{port}/")
    assert (p.kind, p.status) == ("disallow_all", None)
    assert p.unreachable


def test_read_timeout_is_unreachable(client: Client, site: Site) -> None:
    def slow(_path: str) -> Reply:
        time.sleep(1.0)
        return 200, {}, "User-agent: *\nAllow: /\n"

    url = serve(site, {"/robots.txt": slow})
    p = client.fetch(url("/"), timeout=0.2)
    assert (p.kind, p.status) == ("disallow_all", None)


def test_redirect_to_another_host_is_followed(client: Client, site: Site) -> None:
    other = serve(site, {"/robots.txt": "User-agent: *\nDisallow: /admin\n"}, "127.0.0.2")
    url = serve(site, {"/robots.txt": (301, {"Location": other("/robots.txt")}, "")})
    p = client.fetch(url("/"))
    assert p.kind == "rules"
    # The rules apply to the original host (RFC 9309 2.3.1.2).
    assert not p.allows(url("/admin/x"))
    assert p.allows(url("/news"))
    assert len(requests_to(site, other)) == 1


def serve_chain(site: Site, hops: int) -> Callable[[str], str]:
    """robots.txt redirected ``hops`` times on its own host, then rules that disallow all.

    Each redirect closes its connection, as the HTTP/1.0 server these tests first ran on did:
    ``fetch_robots`` releases a redirect's connection without reading its (empty) body, which
    urllib3 would then reuse with the old response still pending.
    """
    close = {"Connection": "close"}
    routes: dict[str, Route] = {"/robots.txt": (302, {"Location": "/r/1", **close}, "")}
    for i in range(1, hops):
        routes[f"/r/{i}"] = (307, {"Location": f"/r/{i + 1}", **close}, "")
    routes[f"/r/{hops}"] = "User-agent: *\nDisallow: /\n"
    return serve(site, routes)


def test_five_redirects_are_followed(client: Client, site: Site) -> None:
    url = serve_chain(site, 5)
    p = client.fetch(url("/"))
    assert p.kind == "rules" and not p.allows(url("/x"))
    assert len(site.requests) == 6


def test_more_than_five_redirects_means_unavailable(client: Client, site: Site) -> None:
    url = serve_chain(site, 6)
    p = client.fetch(url("/"))
    assert (p.kind, p.status) == ("allow_all", 307)
    assert len(site.requests) == 6  # the seventh request is never made


def test_redirect_to_another_scheme_is_not_followed(client: Client, site: Site) -> None:
    url = serve(site, {"/robots.txt": (302, {"Location": "ftp://127.0.0.1/robots.txt"}, "")})
    p = client.fetch(url("/"))
    assert p.kind == "allow_all"


def test_huge_robots_is_cut_at_500_kib(client: Client, site: Site) -> None:
    line = b"Disallow: /x" + b"y" * 87 + b"\n"  # 100 bytes
    body = b"User-agent: *\nDisallow: /first\n" + line * (2 * MAX_ROBOTS_SIZE // len(line))
    body += b"Disallow: /\n"  # far past the limit: never read
    url = serve(site, {"/robots.txt": (200, {"Content-Type": "text/plain"}, body)})
    p = client.fetch(url("/"))
    assert p.kind == "rules"
    assert len(p.text) <= MAX_ROBOTS_SIZE
    assert not p.allows(url("/first"))
    assert p.allows(url("/other"))
