"""crawler.http against well-behaved loopback servers: counters, slots, redirects, headers."""

from __future__ import annotations

import gzip
import http.client
import zlib

import brotli
import pytest
import zstandard
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from crawler.http import (
    BodyTooLargeError,
    DecodeError,
    HostChangedError,
    HTTPConnectionPool,
    HTTPResponse,
    HTTPSConnectionPool,
    LocationParseError,
    MaxRetryError,
    PoolManager,
    Retry,
    Timeout,
    connection_from_url,
)
from tests.kit.servers import MisbehavingServer


def pool_for(server: MisbehavingServer, **kw: object) -> HTTPConnectionPool:
    return HTTPConnectionPool(server.host, server.port, timeout=5, **kw)  # type: ignore[arg-type]


# -- counters, LIFO, lazy fill ----------------------------------------------------------------


def test_new_pool_opens_nothing_and_keep_alive_reuses(server: MisbehavingServer) -> None:
    with pool_for(server, maxsize=1) as pool:
        assert (pool.num_connections, pool.num_requests, pool.num_idle) == (0, 0, 0)
        assert pool.request("GET", "/ok").data == b"ok"
        assert pool.request("GET", "/ok", fields={"q": "1"}).data == b"ok"
        assert (pool.num_connections, pool.num_requests) == (1, 2)
        assert repr(pool) == f"<HTTPConnectionPool {server.host}:{server.port} 1 idle 0 busy>"
    assert [a.target for a in server.requests_to("/ok")] == ["/ok", "/ok?q=1"]


def test_lifo_reuses_most_recent_connection(server: MisbehavingServer) -> None:
    with pool_for(server, maxsize=3) as pool:
        first = pool.urlopen("GET", "/ok", preload_content=False)
        second = pool.urlopen("GET", "/ok", preload_content=False)
        assert pool.num_in_use == 2
        first.read()
        second.read()  # returned last, so reused first
        assert (pool.num_in_use, pool.num_idle, pool.num_connections) == (0, 2, 2)
        pool.urlopen("GET", "/ok")
    arrivals = server.requests_to("/ok")
    assert arrivals[2].conn_id == arrivals[1].conn_id != arrivals[0].conn_id


def test_block_false_opens_extra_and_discards_it(server: MisbehavingServer) -> None:
    with pool_for(server, maxsize=1, block=False) as pool:
        a = pool.urlopen("GET", "/ok", preload_content=False)
        b = pool.urlopen("GET", "/ok", preload_content=False)
        assert (pool.num_connections, pool.num_in_use) == (2, 2)
        a.read()
        b.read()  # the pool is full: this one is closed
        assert (pool.num_in_use, pool.num_idle) == (0, 1)


def test_streaming_response_holds_its_slot_until_read(server: MisbehavingServer) -> None:
    with pool_for(server, maxsize=1, block=True) as pool:
        r = pool.urlopen("GET", "/ok?size=100000", preload_content=False)
        assert pool.num_in_use == 1
        assert sum(len(c) for c in r.stream(4096)) == 100000
        assert (pool.num_in_use, pool.num_idle) == (0, 1)
        r2 = pool.urlopen("GET", "/ok?size=100000", preload_content=False)
        r2.release_conn()
        assert pool.num_in_use == 0
        assert pool.urlopen("GET", "/ok", pool_timeout=1).data == b"ok"


def test_retry_and_timeout_objects_accepted(server: MisbehavingServer) -> None:
    with pool_for(server) as pool:
        r = pool.urlopen("GET", "/ok", retries=Retry(2), timeout=Timeout(connect=2, read=2))
        assert r.status == 200
        assert pool.urlopen("GET", "/ok", retries=1, timeout=3.0).status == 200
        assert pool.urlopen("GET", "/ok", timeout=None).status == 200


def test_closed_pool_raises(server: MisbehavingServer) -> None:
    from crawler.http import ClosedPoolError

    pool = pool_for(server)
    pool.close()
    with pytest.raises(ClosedPoolError):
        pool.urlopen("GET", "/ok")


# -- redirects -------------------------------------------------------------------------------


def _redirect(httpserver: HTTPServer, path: str, status: int, location: str) -> None:
    httpserver.expect_request(path).respond_with_data(
        "", status=status, headers={"Location": location}
    )


def _echo(request: Request) -> Response:
    lines = [f"{request.method} {request.full_path}"]
    lines += [f"{k.lower()}: {v}" for k, v in request.headers.items()]
    lines.append("body=" + request.get_data().decode())
    return Response("\n".join(lines))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_codes_and_method_rewrite(httpserver: HTTPServer, status: int) -> None:
    _redirect(httpserver, "/from", status, "to?x=1")  # relative
    httpserver.expect_request("/to").respond_with_handler(_echo)
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        r = pool.urlopen("POST", "/from", body=b"payload", headers={"Content-Type": "a/b"})
        text = r.data.decode()
        assert r.status == 200
        assert pool.num_requests == 2
        if status in (307, 308):
            assert text.startswith("POST /to?x=1")
            assert "body=payload" in text
            assert "content-type: a/b" in text
        else:
            assert text.startswith("GET /to?x=1")
            assert text.endswith("body=")
            assert "content-type" not in text


def test_redirect_false_returns_the_3xx(httpserver: HTTPServer) -> None:
    _redirect(httpserver, "/from", 302, "/to")
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        r = pool.urlopen("GET", "/from", redirect=False)
        assert (r.status, r.get_redirect_location()) == (302, "/to")


def test_cross_host_redirect_on_a_bare_pool(httpserver: HTTPServer) -> None:
    _redirect(httpserver, "/away", 302, "http://elsewhere.invalid/")
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        with pytest.raises(HostChangedError) as info:
            pool.urlopen("GET", "/away")
        assert info.value.url == "http://elsewhere.invalid/"
        assert pool.num_in_use == 0
        with pytest.raises(HostChangedError):
            pool.urlopen("GET", "http://elsewhere.invalid/x")


def test_redirect_loop_exhausts_retries(httpserver: HTTPServer) -> None:
    _redirect(httpserver, "/loop", 302, "/loop")
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        with pytest.raises(MaxRetryError) as info:
            pool.urlopen("GET", "/loop", retries=2)
        assert "redirect" in str(info.value.reason)
        assert pool.num_requests == 3
        assert pool.num_in_use == 0


@pytest.mark.parametrize("location", ["file:///etc/passwd", "javascript:alert(1)"])
def test_bad_redirect_targets_are_refused(httpserver: HTTPServer, location: str) -> None:
    _redirect(httpserver, "/bad", 302, location)
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        with pytest.raises(LocationParseError):
            pool.urlopen("GET", "/bad")
        assert pool.num_in_use == 0


# -- headers ---------------------------------------------------------------------------------


def test_default_headers_vs_explicit(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/e").respond_with_handler(_echo)
    with HTTPConnectionPool(httpserver.host, httpserver.port, headers={"X-Pool": "1"}) as pool:
        default = pool.request("GET", "/e").data.decode()
        assert "x-pool: 1" in default
        assert f"host: {httpserver.host}:{httpserver.port}" in default
        assert "accept-encoding: gzip, deflate" in default
        explicit = pool.request("GET", "/e", headers={"X-Call": "2"}).data.decode()
        assert "x-call: 2" in explicit
        assert "x-pool" not in explicit
        posted = pool.request("POST", "/e", fields={"a": "b"}, multipart_boundary="BB")
        text = posted.data.decode()
        assert "x-pool: 1" in text
        assert "content-type: multipart/form-data; boundary=BB" in text
        form = pool.request_encode_body("POST", "/e", fields={"a": "b"}, encode_multipart=False)
        assert "body=a=b" in form.data.decode()


def test_headers_are_case_insensitive_and_repeated(httpserver: HTTPServer) -> None:
    response = Response("x")
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    httpserver.expect_request("/h").respond_with_response(response)
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        r = pool.request("GET", "/h")
        assert r.headers["set-cookie"] == "a=1, b=2"
        assert r.headers.getlist("SET-COOKIE") == ["a=1", "b=2"]
        assert r.getheader("content-type") == "text/plain; charset=utf-8"
        assert r.getheader("missing", "d") == "d"
        assert r.version in (10, 11) and r.reason == "OK"


def test_deprecated_get_url_post_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/e").respond_with_handler(_echo)
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        with pytest.warns(DeprecationWarning, match="get_url"):
            r = pool.get_url("/e", fields={"q": "1"})
        assert r.data.decode().startswith("GET /e?q=1")
        with pytest.warns(DeprecationWarning, match="post_url"):
            r = pool.post_url("/e", fields={"q": "1"})
        assert r.data.decode().startswith("POST /e")


# -- decoding --------------------------------------------------------------------------------

PLAIN = b"hello decoded world " * 1000


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("x-gzip", gzip.compress(PLAIN)),
        ("Deflate", zlib.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)[2:-4]),
        ("br", brotli.compress(PLAIN)),
        ("zstd", zstandard.ZstdCompressor().compress(PLAIN)),
    ],
)
def test_decoding(httpserver: HTTPServer, encoding: str, encoded: bytes) -> None:
    httpserver.expect_request("/d").respond_with_data(
        encoded, headers={"Content-Encoding": encoding}
    )
    with HTTPConnectionPool(httpserver.host, httpserver.port) as pool:
        assert pool.request("GET", "/d").data == PLAIN
        raw = pool.request("GET", "/d", decode_content=False).data
        assert raw == encoded
        streamed = pool.request("GET", "/d", preload_content=False)
        assert b"".join(streamed.stream(1000)) == PLAIN
        assert pool.num_in_use == 0


def test_decoded_size_cap(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/bomb").respond_with_data(
        gzip.compress(b"\0" * 5_000_000), headers={"Content-Encoding": "gzip"}
    )
    httpserver.expect_request("/bad").respond_with_data(
        b"not gzip at all", headers={"Content-Encoding": "gzip"}
    )
    with HTTPConnectionPool(httpserver.host, httpserver.port, max_decoded_size=100_000) as pool:
        with pytest.raises(BodyTooLargeError, match="max_decoded_size=100000"):
            pool.request("GET", "/bomb")
        assert pool.request("GET", "/bomb", max_decoded_size=None).data == b"\0" * 5_000_000
        with pytest.raises(DecodeError):
            pool.request("GET", "/bad")
        assert pool.num_in_use == 0


# -- helpers and wrappers --------------------------------------------------------------------


def test_connection_from_url_and_is_same_host() -> None:
    pool = connection_from_url("http://Example.com:8080/x", maxsize=3)
    assert (type(pool), pool.host, pool.port, pool.maxsize) == (
        HTTPConnectionPool, "example.com", 8080, 3,
    )  # fmt: skip
    assert pool.is_same_host("/anything")
    assert pool.is_same_host("http://example.com:8080/y")
    assert not pool.is_same_host("http://example.com/y")
    assert not pool.is_same_host("https://example.com:8080/")
    https = connection_from_url("https://example.com/")
    assert isinstance(https, HTTPSConnectionPool)
    assert https.is_same_host("https://example.com:443/")


def test_from_httplib(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/g").respond_with_data(
        gzip.compress(b"wrapped"), headers={"Content-Encoding": "gzip", "X-A": "1"}
    )
    conn = http.client.HTTPConnection(httpserver.host, httpserver.port, timeout=5)
    try:
        conn.request("GET", "/g")
        r = HTTPResponse.from_httplib(conn.getresponse())
        assert (r.status, r.headers["x-a"], r.data) == (200, "1", b"wrapped")
    finally:
        conn.close()


# -- PoolManager -----------------------------------------------------------------------------


def test_pool_manager_routes_and_evicts(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/e").respond_with_handler(_echo)
    other = HTTPServer(host="127.0.0.1", port=0)
    other.expect_request("/e").respond_with_handler(_echo)
    other.start()
    try:
        with PoolManager(num_pools=1) as manager:
            assert manager.request("GET", httpserver.url_for("/e")).status == 200
            first = manager.connection_from_url(httpserver.url_for("/"))
            assert manager.connection_from_url(httpserver.url_for("/x")) is first
            assert manager.request("GET", other.url_for("/e")).status == 200
            assert len(manager) == 1
            assert manager.connection_from_url(httpserver.url_for("/")) is not first
    finally:
        other.stop()


def test_pool_manager_cross_host_redirect_drops_credentials(httpserver: HTTPServer) -> None:
    other = HTTPServer(host="127.0.0.1", port=0)
    other.expect_request("/land").respond_with_handler(_echo)
    other.start()
    try:
        _redirect(httpserver, "/go", 302, other.url_for("/land"))
        headers = {"Authorization": "Bearer s", "Cookie": "c=1", "X-Keep": "k"}
        with PoolManager(headers=headers) as manager:
            text = manager.request("GET", httpserver.url_for("/go")).data.decode()
        assert text.startswith("GET /land")
        assert "x-keep: k" in text
        assert "authorization" not in text
        assert "cookie" not in text
    finally:
        other.stop()
