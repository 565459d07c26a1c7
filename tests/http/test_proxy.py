"""Proxies and name pinning in the pool layer, through real loopback proxies (tests/kit/proxies).

HTTP targets go through an HTTP proxy in absolute form; HTTPS targets through a CONNECT tunnel
verified against the target's trustme certificate; SOCKS5 with local and remote (socks5h)
name resolution; ``resolve`` pins a made-up name to a loopback address.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme

from crawler.http import (
    HTTPConnectionPool,
    HTTPSConnectionPool,
    MaxRetryError,
    PoolManager,
    ProxyConfig,
    ProxyError,
    ProxyManager,
    SSLError,
    proxy_from_url,
    redact_proxy_url,
)
from crawler.http.util.resolve import pinned_address
from tests.kit.pools import assert_cause
from tests.kit.proxies import http_proxy, socks5_proxy
from tests.kit.servers import MisbehavingServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def origin() -> Iterator[MisbehavingServer]:
    with MisbehavingServer(lifetime=60.0) as srv:
        yield srv


def tls_origin(ca: trustme.CA, *names: str, address: str = "127.0.0.1") -> MisbehavingServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    sni: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)  # type: ignore[assignment,func-returns-value]
    srv = MisbehavingServer((address,), lifetime=60.0, tls_context=context)
    srv.sni = sni  # type: ignore[attr-defined]
    return srv


# --- HTTP proxy, http:// target ------------------------------------------------------------


def test_http_target_goes_in_absolute_form_with_proxy_auth(origin: MisbehavingServer) -> None:
    with http_proxy(auth=("ann", "s3cret")) as proxy:
        with proxy_from_url(proxy.url(("ann", "s3cret")), timeout=5) as pm:
            r = pm.request("GET", f"http://127.0.0.1:{origin.port}/ok?x=1")
            assert (r.status, r.data) == (200, b"ok")
        [seen] = proxy.seen
        assert seen.target == f"http://127.0.0.1:{origin.port}/ok?x=1"
        assert seen.headers["proxy-authorization"].startswith("Basic ")
        assert seen.headers["host"] == f"127.0.0.1:{origin.port}"
    # The target never sees the proxy's credentials.
    [arrival] = origin.requests_to("/ok")
    assert arrival.header("proxy-authorization") is None


def test_wrong_proxy_credentials_get_the_407(origin: MisbehavingServer) -> None:
    with (
        http_proxy(auth=("ann", "s3cret")) as proxy,
        proxy_from_url(proxy.url(("ann", "wrong")), timeout=5) as pm,
    ):
        r = pm.request("GET", f"http://127.0.0.1:{origin.port}/ok", retries=0)
        assert r.status == 407
    assert origin.requests_to("/ok") == []


def test_pools_stay_keyed_by_the_target(origin: MisbehavingServer) -> None:
    with http_proxy() as proxy, ProxyManager(proxy.url(), timeout=5) as pm:
        pm.request("GET", f"http://127.0.0.1:{origin.port}/ok")
        pm.request("GET", f"http://localhost:{origin.port}/ok")
        assert set(pm.pools) == {
            ("http", "127.0.0.1", origin.port),
            ("http", "localhost", origin.port),
        }
        assert "ann" not in repr(pm)


# --- HTTP proxy, https:// target through CONNECT -------------------------------------------


def test_https_through_connect_verifies_the_target(ca: trustme.CA, ca_file: str) -> None:
    with tls_origin(ca, "localhost") as srv, http_proxy(auth=("ann", "pw")) as proxy:
        with proxy_from_url(proxy.url(("ann", "pw")), ca_certs=ca_file, timeout=5) as pm:
            r = pm.request("GET", f"https://localhost:{srv.port}/ok")
            assert (r.status, r.data) == (200, b"ok")
        assert srv.sni == ["localhost"]  # type: ignore[attr-defined]
        [seen] = proxy.seen
        assert (seen.method, seen.target) == ("CONNECT", f"localhost:{srv.port}")
        assert seen.headers["proxy-authorization"].startswith("Basic ")
        [arrival] = srv.requests_to("/ok")
        assert arrival.target == "/ok"  # origin form inside the tunnel
        assert arrival.header("proxy-authorization") is None


def test_https_through_connect_rejects_a_certificate_for_another_name(
    ca: trustme.CA, ca_file: str
) -> None:
    with (
        tls_origin(ca, "elsewhere.test") as srv,
        http_proxy() as proxy,
        proxy_from_url(proxy.url(), ca_certs=ca_file, timeout=5) as pm,
    ):
        with pytest.raises((SSLError, MaxRetryError)) as excinfo:
            pm.request("GET", f"https://localhost:{srv.port}/ok", retries=0)
        assert_cause(excinfo.value, SSLError)


def test_refused_tunnel_is_a_proxy_error(ca_file: str) -> None:
    with (
        http_proxy(auth=("ann", "pw")) as proxy,
        proxy_from_url(proxy.url(), ca_certs=ca_file, timeout=5) as pm,
    ):
        with pytest.raises((ProxyError, MaxRetryError)) as excinfo:
            pm.request("GET", "https://localhost:9/ok", retries=0)
        assert_cause(excinfo.value, ProxyError)
        assert "407" in str(excinfo.value)


def test_dead_proxy_is_a_proxy_error_without_credentials() -> None:
    with http_proxy(fail=True) as proxy:
        url = proxy.url(("ann", "topsecret"))
        with proxy_from_url(url, timeout=5) as pm:
            with pytest.raises((ProxyError, MaxRetryError)) as excinfo:
                pm.request("GET", "http://127.0.0.1:9/ok", retries=0)
            assert "topsecret" not in str(excinfo.value)
    with (
        pytest.raises((ProxyError, MaxRetryError)) as excinfo2,
        proxy_from_url("http://ann:topsecret@127.0.0.1:9", timeout=5) as pm,
    ):
        pm.request("GET", "http://127.0.0.1:9/ok", retries=0)
    assert_cause(excinfo2.value, ProxyError)
    assert "topsecret" not in str(excinfo2.value)


# --- SOCKS5 --------------------------------------------------------------------------------


def test_socks5_resolves_locally_and_sends_an_address(origin: MisbehavingServer) -> None:
    with socks5_proxy(auth=("ann", "pw")) as proxy:
        url = f"socks5://ann:pw@127.0.0.1:{proxy.port}"
        with proxy_from_url(url, timeout=5) as pm:
            r = pm.request("GET", f"http://localhost:{origin.port}/ok")
            assert (r.status, r.data) == (200, b"ok")
        [seen] = proxy.seen
        assert seen.headers == {"atyp": "ipv4", "user": "ann"}
        assert seen.target == f"127.0.0.1:{origin.port}"
    [arrival] = origin.requests_to("/ok")
    assert arrival.target == "/ok"
    assert arrival.header("host") == f"localhost:{origin.port}"


def test_socks5h_lets_the_proxy_resolve_the_name(ca: trustme.CA, ca_file: str) -> None:
    # shop.example.test exists only in the proxy's own table: local DNS could not find it.
    with tls_origin(ca, "shop.example.test") as srv:
        names = {"shop.example.test": "127.0.0.1"}
        with socks5_proxy(names=names) as proxy:
            url = f"socks5h://127.0.0.1:{proxy.port}"
            with proxy_from_url(url, ca_certs=ca_file, timeout=5) as pm:
                r = pm.request("GET", f"https://shop.example.test:{srv.port}/ok")
                assert r.data == b"ok"
            [seen] = proxy.seen
            assert seen.headers["atyp"] == "name"
            assert seen.target == f"shop.example.test:{srv.port}"
        assert srv.sni == ["shop.example.test"]  # type: ignore[attr-defined]


def test_socks_refusal_is_a_proxy_error(origin: MisbehavingServer) -> None:
    with (
        socks5_proxy(auth=("ann", "pw")) as proxy,
        proxy_from_url(f"socks5://ann:wr0ng@127.0.0.1:{proxy.port}", timeout=5) as pm,
    ):
        with pytest.raises((ProxyError, MaxRetryError)) as excinfo:
            pm.request("GET", f"http://127.0.0.1:{origin.port}/ok", retries=0)
        assert_cause(excinfo.value, ProxyError)
        assert "wr0ng" not in str(excinfo.value)


# --- resolve -------------------------------------------------------------------------------


def test_pinned_address_rules() -> None:
    rules = {
        "shop.example.com": "127.0.0.1",
        "*.example.com:8443": "127.0.0.2",
        "*.example.com": "127.0.0.3",
        "*.com": "127.0.0.4",
    }
    assert pinned_address(rules, "shop.example.com", 443) == "127.0.0.1"
    assert pinned_address(rules, "SHOP.example.com", 8443) == "127.0.0.1"  # exact beats glob
    assert pinned_address(rules, "www.example.com", 8443) == "127.0.0.2"  # port beats none
    assert pinned_address(rules, "www.example.com", 80) == "127.0.0.3"  # longer glob wins
    assert pinned_address(rules, "a.org", 80) is None
    with pytest.raises(ValueError):
        pinned_address({"x:99999": "127.0.0.1"}, "x", 80)


def test_resolve_pins_a_name_for_plain_http() -> None:
    with MisbehavingServer(("127.0.0.2",), lifetime=60.0) as srv:
        resolve = {f"shop.example.test:{srv.port}": "127.0.0.2"}
        with HTTPConnectionPool("shop.example.test", srv.port, resolve=resolve, timeout=5) as p:
            assert p.urlopen("GET", "/ok").data == b"ok"
        [arrival] = srv.requests_to("/ok")
        assert arrival.header("host") == f"shop.example.test:{srv.port}"


def test_resolve_keeps_sni_and_the_certificate_check_on_the_name(
    ca: trustme.CA, ca_file: str
) -> None:
    with tls_origin(ca, "shop.example.test", address="127.0.0.2") as srv:
        resolve = {"*.example.test": "127.0.0.2"}
        with PoolManager(resolve=resolve, ca_certs=ca_file, timeout=5) as pm:
            assert pm.request("GET", f"https://shop.example.test:{srv.port}/ok").data == b"ok"
        assert srv.sni == ["shop.example.test"]  # type: ignore[attr-defined]
        # The same address under a name the certificate does not hold is refused.
        with HTTPSConnectionPool(
            "other.example.test", srv.port, resolve=resolve, ca_certs=ca_file, timeout=5
        ) as pool:
            with pytest.raises((SSLError, MaxRetryError)) as excinfo:
                pool.urlopen("GET", "/ok", retries=0)
            assert_cause(excinfo.value, SSLError)


# --- values --------------------------------------------------------------------------------


def test_proxy_config_parses_and_hides_credentials() -> None:
    config = ProxyConfig.from_url("http://ann:p%40ss@proxy.test:3128")
    assert (config.host, config.port, config.username, config.password) == (
        "proxy.test",
        3128,
        "ann",
        "p@ss",
    )
    assert "p@ss" not in repr(config) and "ann" not in repr(config)
    assert config.url == "http://proxy.test:3128"
    assert ProxyConfig.from_url("socks5h://h").port == 1080
    with pytest.raises(ValueError):
        ProxyConfig.from_url("ftp://h")
    assert redact_proxy_url("http://ann:pw@h:1/x") == "http://***@h:1/x"
    assert redact_proxy_url("socks5://h:1") == "socks5://h:1"
