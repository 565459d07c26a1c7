"""Credentials never follow a redirect to another origin: the crawl and PoolManager share one rule.

Real crawls against loopback servers that record every request's headers: a request carrying
``Authorization``, ``Cookie`` and ``Proxy-Authorization`` is redirected to the same origin, to
another host, to another port and from https down to http, and we check what arrived at the
landing page (on both backends, ``crawl_db``: the request, its headers and its body go through
the frontier). The same hops are then made through ``crawler.http.PoolManager``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from crawler.engine import crawl
from crawler.http import PoolManager
from crawler.http.util.redirect import next_hop
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider
from tests.kit.site import Site

SECRETS = {
    "Authorization": "Bearer s3cret",
    "Cookie": "session=abc",
    "Proxy-Authorization": "Basic cHJveHk6cHc=",
}
KEPT = {"X-Trace": "t-1", "Accept-Language": "fr"}
FAST = Settings(workers=1, timeout=5, retries=0, robots=False)


# --- the rule itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_url", "to_url", "cross"),
    [
        ("http://a.test/x", "http://a.test/y", False),
        ("http://a.test/x", "http://A.TEST:80/y", False),
        ("https://a.test/x", "https://a.test:443/y", False),
        ("http://a.test/x", "http://b.test/y", True),
        ("http://a.test/x", "http://a.test:8080/y", True),
        ("https://a.test/x", "http://a.test/y", True),
        ("http://a.test/x", "https://a.test/y", True),
    ],
)
def test_credentials_stay_with_their_origin(from_url: str, to_url: str, cross: bool) -> None:
    headers = [*SECRETS.items(), *KEPT.items()]
    hop = next_hop(302, "GET", headers, from_url, to_url)
    assert hop.cross_origin is cross
    names = {name for name, _ in hop.headers}
    assert names >= set(KEPT)
    assert (names & set(SECRETS)) == (set() if cross else set(SECRETS))


@pytest.mark.parametrize(
    ("status", "method", "after", "keeps_body"),
    [
        (303, "POST", "GET", False),
        (303, "PUT", "GET", False),
        (303, "HEAD", "HEAD", True),
        (302, "POST", "GET", False),
        (301, "POST", "GET", False),
        (302, "PUT", "PUT", True),
        (307, "POST", "POST", True),
        (308, "POST", "POST", True),
    ],
)
def test_method_change_drops_body_headers(
    status: int, method: str, after: str, keeps_body: bool
) -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Language", "fr"), ("X-Trace", "1")]
    hop = next_hop(status, method, headers, "http://a.test/", "http://a.test/b")
    assert (hop.method, hop.keeps_body) == (after, keeps_body)
    names = {name for name, _ in hop.headers}
    assert "X-Trace" in names
    assert ("Content-Type" in names) is keeps_body
    assert ("Content-Language" in names) is keeps_body


# --- through a real crawl -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for 127.0.0.2, and the CA trusted by every process the crawl starts."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # read by ssl.create_default_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.2").configure_cert(ctx)
    return ctx


class Carrier(Spider):
    """Sends one request with credentials (and, when asked, a POST body) to ``start``."""

    name = "carrier"
    start = ""
    method = "GET"

    def start_requests(self) -> Iterator[Request]:
        body = b"a=1" if self.method == "POST" else None
        extra = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        yield Request(
            self.start, method=self.method, headers={**SECRETS, **KEPT, **extra}, body=body
        )

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "status": response.status}


def _landed(site: Site, path: str = "/land") -> list[tuple[str, dict[str, str], bytes]]:
    return [
        (method, headers, body)
        for (_, p, headers, _), method, body in zip(
            site.requests, site.methods, site.bodies, strict=True
        )
        if p == path
    ]


def _crawl_hop(
    site: Site, db: Path | str, start: str, allowed: str, method: str = "GET"
) -> tuple[str, dict[str, str], bytes]:
    result = crawl(
        Carrier,
        settings=FAST,
        db_path=db,
        spider_kwargs={"start": start, "method": method, "allowed_domains": allowed},
    )
    assert result.exit_code == 0, result
    assert result.stats["redirects"] == 1
    (landed,) = _landed(site)
    return landed


def _assert_stripped(headers: dict[str, str]) -> None:
    for name in SECRETS:
        assert name.lower() not in headers, name
    for name, value in KEPT.items():
        assert headers[name.lower()] == value


@pytest.mark.timeout(60)
def test_crawl_same_origin_redirect_keeps_credentials(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    a = site.add_host("127.0.0.2", {"/land": "<p>ok</p>"})
    site.servers[0].routes["/go"] = (302, {"Location": "/land"}, "")
    _, headers, _ = _crawl_hop(site, crawl_db("crawl"), f"http://{a}/go", "127.0.0.2")
    for name, value in {**SECRETS, **KEPT}.items():
        assert headers[name.lower()] == value
    first = site.requests[0][2]
    assert first["authorization"] == SECRETS["Authorization"]


@pytest.mark.timeout(60)
def test_crawl_cross_host_redirect_drops_credentials(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    b = site.add_host("127.0.0.3", {"/land": "<p>ok</p>"})
    a = site.add_host("127.0.0.2", {"/go": (302, {"Location": f"http://{b}/land"}, "")})
    _, headers, _ = _crawl_hop(site, crawl_db("crawl"), f"http://{a}/go", "127.0.0.2 127.0.0.3")
    _assert_stripped(headers)


@pytest.mark.timeout(60)
def test_crawl_cross_port_redirect_drops_credentials(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    b = site.add_host("127.0.0.2", {"/land": "<p>ok</p>"})
    a = site.add_host("127.0.0.2", {"/go": (302, {"Location": f"http://{b}/land"}, "")})
    assert a != b and a.split(":")[0] == b.split(":")[0]
    _, headers, _ = _crawl_hop(site, crawl_db("crawl"), f"http://{a}/go", "127.0.0.2")
    _assert_stripped(headers)


@pytest.mark.timeout(60)
def test_crawl_https_to_http_downgrade_drops_credentials(
    site: Site, crawl_db: Callable[[str], Path | str], trusted: ssl.SSLContext
) -> None:
    plain = site.add_host("127.0.0.2", {"/land": "<p>ok</p>"})
    secure = site.add_host(
        "127.0.0.2", {"/go": (302, {"Location": f"http://{plain}/land"}, "")}, tls=trusted
    )
    _, headers, _ = _crawl_hop(site, crawl_db("crawl"), f"https://{secure}/go", "127.0.0.2")
    _assert_stripped(headers)
    go = next(h for (_, p, h, _) in site.requests if p == "/go")
    assert go["authorization"] == SECRETS["Authorization"]  # the https origin did get them


@pytest.mark.timeout(60)
def test_crawl_post_303_becomes_get_without_body(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    b = site.add_host("127.0.0.3", {"/land": "<p>ok</p>"})
    a = site.add_host("127.0.0.2", {"/go": (303, {"Location": f"http://{b}/land"}, "")})
    method, headers, body = _crawl_hop(
        site, crawl_db("crawl"), f"http://{a}/go", "127.0.0.2 127.0.0.3", "POST"
    )
    assert (method, body) == ("GET", b"")
    assert "content-type" not in headers and "content-length" not in headers
    _assert_stripped(headers)
    assert site.methods[0] == "POST" and site.bodies[0] == b"a=1"


# --- the same hops through PoolManager ------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("target", ["same", "host", "port"])
def test_pool_manager_applies_the_same_rule(site: Site, target: str) -> None:
    land = {"/land": "<p>ok</p>"}
    if target == "host":
        b = site.add_host("127.0.0.3", land)
    elif target == "port":
        b = site.add_host("127.0.0.2", land)
    a = site.add_host("127.0.0.2", land if target == "same" else {})
    b = a if target == "same" else b
    site.servers[-1].routes["/go"] = (302, {"Location": f"http://{b}/land"}, "")
    with PoolManager(headers={**SECRETS, **KEPT}) as manager:
        assert manager.request("GET", f"http://{a}/go").status == 200
    (_, headers, _) = _landed(site)[0]
    if target == "same":
        assert headers["authorization"] == SECRETS["Authorization"]
        assert headers["cookie"] == SECRETS["Cookie"]
    else:
        _assert_stripped(headers)


@pytest.mark.timeout(30)
def test_pool_manager_https_to_http_downgrade(site: Site, trusted: ssl.SSLContext) -> None:
    plain = site.add_host("127.0.0.2", {"/land": "<p>ok</p>"})
    secure = site.add_host(
        "127.0.0.2", {"/go": (302, {"Location": f"http://{plain}/land"}, "")}, tls=trusted
    )
    with PoolManager(headers={**SECRETS, **KEPT}) as manager:
        assert manager.request("GET", f"https://{secure}/go").status == 200
    (_, headers, _) = _landed(site)[0]
    _assert_stripped(headers)


@pytest.mark.timeout(30)
def test_pool_manager_post_303_drops_body(site: Site) -> None:
    b = site.add_host("127.0.0.3", {"/land": "<p>ok</p>"})
    a = site.add_host("127.0.0.2", {"/go": (303, {"Location": f"http://{b}/land"}, "")})
    headers = {**SECRETS, "Content-Type": "text/plain"}
    with PoolManager() as manager:
        r = manager.request("POST", f"http://{a}/go", body=b"payload", headers=headers)
    assert r.status == 200
    (method, landed, body) = _landed(site)[0]
    assert (method, body) == ("GET", b"")
    assert "content-type" not in landed and "authorization" not in landed
