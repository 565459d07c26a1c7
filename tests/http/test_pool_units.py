"""Pure units of crawler.http: helpers, policies, headers, and the parser fed with bytes."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard

import crawler.http as http
from crawler.http import (
    HeaderInjectionError,
    HTTPHeaderDict,
    LocationParseError,
    MaxRetryError,
    ProtocolError,
    ReadTimeoutError,
    Retry,
    Timeout,
    encode_multipart_formdata,
    make_headers,
    parse_url,
)
from crawler.http._decoding import make_decoder
from crawler.http._protocol import (
    ChunkedFramer,
    ContentLengthFramer,
    NoBodyFramer,
    UntilCloseFramer,
    build_request_head,
    header_block,
    parse_head,
)
from crawler.http.exceptions import ConnectTimeoutError, NewConnectionError

# -- the public API ---------------------------------------------------------------------------

PUBLIC = {
    "BodyTooLargeError", "ClosedPoolError", "ConnectTimeoutError", "ConnectionPool",
    "DecodeError", "EmptyPoolError", "HTTPConnectionPool", "HTTPError", "HTTPHeaderDict",
    "HTTPResponse", "HTTPSConnectionPool", "HeaderInjectionError", "HostChangedError",
    "LocationParseError", "MaxRetryError", "NewConnectionError", "PoolError", "PoolManager",
    "ProtocolError", "ReadTimeoutError", "ResponseError", "Retry", "SSLError", "Timeout",
    "TimeoutError", "Url", "connection_from_url", "encode_multipart_formdata", "make_headers",
    "parse_url",
    # proxies (issue 11)
    "ProxyConfig", "ProxyError", "ProxyManager", "proxy_from_url", "redact_proxy_url",
}  # fmt: skip


def test_public_api_is_exactly_all() -> None:
    assert set(http.__all__) == PUBLIC
    for name in http.__all__:
        assert getattr(http, name) is not None


def test_exception_tree() -> None:
    assert issubclass(http.PoolError, http.HTTPError)
    for cls in (http.EmptyPoolError, http.ClosedPoolError, http.HostChangedError):
        assert issubclass(cls, http.PoolError)
    assert issubclass(http.MaxRetryError, http.PoolError)
    assert issubclass(http.ConnectTimeoutError, http.TimeoutError)
    assert issubclass(http.ReadTimeoutError, http.TimeoutError)
    assert issubclass(http.TimeoutError, TimeoutError)
    assert issubclass(http.ProtocolError, ConnectionError)
    assert issubclass(http.LocationParseError, ValueError)
    assert issubclass(http.BodyTooLargeError, http.DecodeError)
    assert issubclass(http.ProxyError, http.NewConnectionError)
    err = http.MaxRetryError("pool", "/x", ReadTimeoutError("slow"))
    assert (err.pool, err.url, type(err.reason)) == ("pool", "/x", ReadTimeoutError)
    changed = http.HostChangedError("pool", "http://other/", 2)
    assert (changed.url, changed.retries) == ("http://other/", 2)


# -- make_headers / multipart ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (
            {"keep_alive": True, "user_agent": "Batman/1.0"},
            {"connection": "keep-alive", "user-agent": "Batman/1.0"},
        ),
        ({"accept_encoding": True}, {"accept-encoding": "gzip,deflate"}),
        ({"accept_encoding": ["gzip", "br"]}, {"accept-encoding": "gzip,br"}),
        ({"accept_encoding": "gzip, zstd"}, {"accept-encoding": "gzip, zstd"}),
        ({"basic_auth": "user:pass"}, {"authorization": "Basic dXNlcjpwYXNz"}),
        ({}, {}),
    ],
)
def test_make_headers(kw: dict[str, object], expected: dict[str, str]) -> None:
    assert make_headers(**kw) == expected  # type: ignore[arg-type]


def test_multipart_encoding_exact() -> None:
    body, content_type = encode_multipart_formdata(
        [("a", "1"), ("f", ("x.txt", b"data")), ("g", ("y.bin", "z", "application/x-y"))],
        boundary="BOUND",
    )
    assert content_type == "multipart/form-data; boundary=BOUND"
    assert body == (
        b"--BOUND\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        b"--BOUND\r\n"
        b'Content-Disposition: form-data; name="f"; filename="x.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\ndata\r\n"
        b"--BOUND\r\n"
        b'Content-Disposition: form-data; name="g"; filename="y.bin"\r\n'
        b"Content-Type: application/x-y\r\n\r\nz\r\n"
        b"--BOUND--\r\n"
    )


def test_multipart_dict_and_random_boundary() -> None:
    body, content_type = encode_multipart_formdata({"k": b"v"})
    boundary = content_type.split("boundary=")[1]
    assert len(boundary) == 32
    assert body.endswith(f"--{boundary}--\r\n".encode())


# -- HTTPHeaderDict ---------------------------------------------------------------------------


def test_header_dict_joins_and_lists() -> None:
    h = HTTPHeaderDict()
    h.add("Set-Cookie", "a=1")
    h.add("set-cookie", "b=2")
    h["Content-Type"] = "text/html"
    assert h["SET-COOKIE"] == "a=1, b=2"
    assert h.getlist("set-cookie") == ["a=1", "b=2"]
    assert h.getlist("missing") == []
    assert h["content-type"] == "text/html"
    assert list(h) == ["Set-Cookie", "Content-Type"]
    assert "CONTENT-type" in h
    assert h == {"content-type": "text/html", "set-cookie": "a=1, b=2"} or h != {}
    del h["set-cookie"]
    assert list(h.iteritems()) == [("Content-Type", "text/html")]


# -- Retry / Timeout --------------------------------------------------------------------------


def test_retry_is_immutable_and_counts() -> None:
    r = Retry(total=1)
    r2 = r.increment("GET", "/", error=ReadTimeoutError("x"))
    assert (r.total, r2.total) == (1, 0)
    with pytest.raises(MaxRetryError) as info:
        r2.increment("GET", "/", error=ReadTimeoutError("y"))
    assert isinstance(info.value.reason, ReadTimeoutError)
    with pytest.raises(AttributeError):
        r.total = 5  # type: ignore[misc]


def test_retry_read_errors_only_for_idempotent_methods() -> None:
    error = ProtocolError("dropped")
    with pytest.raises(ProtocolError):
        Retry(3).increment("POST", "/", error=error)
    # A connect error never reached the server: safe for any method.
    assert Retry(3).increment("POST", "/", error=NewConnectionError("refused")).total == 2
    assert Retry(3).increment("POST", "/", error=ConnectTimeoutError("slow")).total == 2


def test_retry_from_int_and_specific_counters() -> None:
    assert Retry.from_int(2).total == 2
    assert Retry.from_int(None).total == 3
    custom = Retry(total=10, connect=0)
    assert Retry.from_int(custom) is custom
    with pytest.raises(MaxRetryError):
        custom.increment("GET", "/", error=ConnectTimeoutError("x"))


def test_retry_status_and_backoff() -> None:
    r = Retry(total=5, status_forcelist=[503], backoff_factor=0.5)
    assert r.is_retry("GET", 503)
    assert not r.is_retry("GET", 500)
    assert not r.is_retry("POST", 503)
    assert Retry(3).is_retry("GET", 429, has_retry_after=True)
    assert not Retry(3).is_retry("GET", 429, has_retry_after=True, retry_after=3600)
    for _ in range(3):
        r = r.increment("GET", "/", error=ReadTimeoutError("x"))
    assert r.get_backoff_time() == 2.0  # 0.5 * 2 ** (3 errors - 1)
    assert Retry.parse_retry_after("7") == 7.0


def test_timeout_values() -> None:
    t = Timeout(connect=1, read=2)
    assert (t.connect_timeout, t.read_timeout()) == (1, 2)
    assert Timeout.coerce(3.0) == Timeout(3.0, 3.0)
    assert Timeout.coerce(None) == Timeout()
    assert Timeout(connect=5, total=2).connect_timeout == 2
    for bad in (-1, 0, "x"):
        with pytest.raises(ValueError):
            Timeout(connect=bad)  # type: ignore[arg-type]


# -- URLs -------------------------------------------------------------------------------------


def test_parse_url() -> None:
    u = parse_url("HTTP://User@Example.COM:8080/p/a?q=1#f")
    assert (u.scheme, u.auth, u.host, u.port, u.path, u.query, u.fragment) == (
        "http", "User", "example.com", 8080, "/p/a", "q=1", "f",
    )  # fmt: skip
    assert u.request_uri == "/p/a?q=1"
    assert parse_url("http://[::1]:81/").netloc == "[::1]:81"
    assert parse_url("example.com").host == "example.com"


@pytest.mark.parametrize(
    "bad", ["http://a b/", "http://x:99999/", "http://x\r\nY: z/", "http:///x", "http://x:y/"]
)
def test_parse_url_rejects(bad: str) -> None:
    with pytest.raises(LocationParseError):
        parse_url(bad)


# -- the sans-I/O parser ----------------------------------------------------------------------


def _feed(framer: object, data: bytes, step: int) -> bytes:
    buf = bytearray()
    out = b""
    for i in range(0, len(data), step):
        buf += data[i : i + step]
        while chunk := framer.take(buf, 1 << 20):  # type: ignore[attr-defined]
            out += chunk
    return out


def test_parse_head_basic() -> None:
    head = parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a\r\nset-cookie: b", "GET"
    )
    assert (head.status, head.reason, head.version, head.keep_alive) == (200, "OK", 11, True)
    assert head.headers.getlist("Set-Cookie") == ["a", "b"]
    assert isinstance(head.framer, ContentLengthFramer)


@pytest.mark.parametrize(
    ("raw", "method", "framer", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "GET", ChunkedFramer, True),
        (b"HTTP/1.1 200 OK", "GET", UntilCloseFramer, False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9", "HEAD", NoBodyFramer, True),
        (b"HTTP/1.1 204 No Content", "GET", NoBodyFramer, True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9", "GET", NoBodyFramer, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1", "GET", ContentLengthFramer, False),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive",
            "GET",
            ContentLengthFramer,
            True,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close",
            "GET",
            ContentLengthFramer,
            False,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
            "GET",
            ChunkedFramer,
            False,
        ),
    ],
)
def test_parse_head_framing(raw: bytes, method: str, framer: type, keep_alive: bool) -> None:
    head = parse_head(raw, method)
    assert type(head.framer) is framer
    assert head.keep_alive is keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 2OO OK",
        b"SPDY/3 200 OK",
        b"hello world",
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\nBad Name: x",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 300,
    ],
)
def test_parse_head_rejects(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_head(raw, "GET")


def test_obs_fold_is_joined_not_split_into_a_new_header() -> None:
    head = parse_head(b"HTTP/1.1 302 Found\r\nLocation: /ok\r\n X-Injected: yes", "GET")
    assert head.headers["location"] == "/ok X-Injected: yes"
    assert "x-injected" not in head.headers


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_chunked_framer(step: int) -> None:
    data = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    framer = ChunkedFramer()
    assert _feed(framer, data, step) == b"hello world"
    assert framer.done


@pytest.mark.parametrize(
    "data",
    [b"zz\r\nhello\r\n", b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhel"],
)
def test_chunked_framer_broken(data: bytes) -> None:
    framer = ChunkedFramer()
    with pytest.raises(ProtocolError):
        _feed(framer, data, 100)
        framer.at_eof()


def test_content_length_framer_short_body() -> None:
    framer = ContentLengthFramer(10)
    assert _feed(framer, b"12345", 2) == b"12345"
    with pytest.raises(ProtocolError, match="5 of 10"):
        framer.at_eof()
    lenient = ContentLengthFramer(10, enforce=False)
    _feed(lenient, b"123", 3)
    lenient.at_eof()
    assert lenient.done


def test_request_head_is_one_bytes_object() -> None:
    block, names = header_block({"X-A": "1"})
    head = build_request_head("GET", "/p?q", "Host: h\r\n", block, names, "", None, False)
    assert head == b"GET /p?q HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
    head = build_request_head("POST", "/", "Host: h\r\n", "", frozenset(), "", 3, False)
    assert b"Content-Length: 3\r\n" in head


@pytest.mark.parametrize(
    "headers", [{"X-A": "1\r\nEvil: yes"}, {"X-A": "a\nb"}, {"X-A": "\x00"}, {"Bad Name": "x"}]
)
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(HeaderInjectionError):
        header_block(headers)


@pytest.mark.parametrize(
    ("method", "target"), [("GET", "/a b"), ("GET", "/a\r\nX: y"), ("G T", "/")]
)
def test_request_line_injection_is_refused(method: str, target: str) -> None:
    with pytest.raises(HeaderInjectionError):
        build_request_head(method, target, "Host: h\r\n", "", frozenset(), "", None, False)


# -- decoders ---------------------------------------------------------------------------------

PLAIN = b"the quick brown fox " * 500


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("X-GZIP", gzip.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)[2:-4]),  # raw deflate
        ("br", brotli.compress(PLAIN)),
        ("zstd", zstandard.ZstdCompressor().compress(PLAIN)),
        ("gzip, br", brotli.compress(gzip.compress(PLAIN))),
    ],
)
def test_decoders(encoding: str, encoded: bytes) -> None:
    decoder = make_decoder(encoding)
    assert decoder is not None
    out = b"".join(
        decoder.decompress(encoded[i : i + 100], 1 << 30) for i in range(0, len(encoded), 100)
    )
    assert out + decoder.flush(1 << 30) == PLAIN


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_decoders_stop_past_the_limit(encoding: str) -> None:
    bomb = b"\0" * (20 * 2**20)
    encoded = {
        "gzip": lambda: gzip.compress(bomb),
        "deflate": lambda: zlib.compress(bomb),
        "br": lambda: brotli.compress(bomb),
        "zstd": lambda: zstandard.ZstdCompressor().compress(bomb),
    }[encoding]()
    decoder = make_decoder(encoding)
    assert decoder is not None
    out = decoder.decompress(encoded, 1000)
    assert 1000 < len(out) < 4 * 2**20  # stopped early, never the whole 20 MiB
