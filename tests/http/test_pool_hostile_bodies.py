"""The pool against hostile bodies and redirects: bombs, odd encodings, big pages, bad Locations."""

from __future__ import annotations

import functools
import re
import time

import pytest

from crawler.http import (
    BodyTooLargeError,
    DecodeError,
    HTTPError,
    MaxRetryError,
    PoolManager,
    Retry,
)
from tests.kit.pools import assert_cause, assert_healthy, make_pool
from tests.kit.servers import (
    BAD_UTF8,
    NESTED_PLAIN,
    UTF16_TEXT,
    MisbehavingServer,
    gzip_bomb,
    nested_bomb,
)

CAP = 8 * 2**20


# One slot and a 2 s timeout unless a test says otherwise.
open_pool = functools.partial(make_pool, timeout=2.0)


@pytest.fixture(scope="module", autouse=True)
def _build_bombs() -> None:
    gzip_bomb()  # about a second, paid once, outside the timed assertions
    nested_bomb()


# -- decompression --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/gzip-bomb", "/nested-bomb"])
def test_bomb_stops_at_the_decoded_cap(server: MisbehavingServer, path: str) -> None:
    with open_pool(server, max_decoded_size=CAP) as pool:
        started = time.monotonic()
        with pytest.raises((DecodeError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", path, retries=0)
        assert_cause(excinfo.value, BodyTooLargeError)
        assert isinstance(assert_cause(excinfo.value, DecodeError), BodyTooLargeError)
        assert time.monotonic() - started < 5
        assert_healthy(pool)


def test_bomb_streamed_stops_at_the_cap(server: MisbehavingServer) -> None:
    with open_pool(server, max_decoded_size=CAP) as pool:
        response = pool.urlopen("GET", "/gzip-bomb", preload_content=False)
        received = 0
        with pytest.raises(BodyTooLargeError):
            for chunk in response.stream(65536):
                received += len(chunk)
        assert received <= CAP
        assert pool.num_in_use == 0
        assert_healthy(pool)


def test_default_cap_is_at_most_100_mb(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        response = pool.urlopen("GET", "/gzip-bomb", preload_content=False)
        received = 0
        with pytest.raises(BodyTooLargeError):
            for chunk in response.stream(2**20):
                received += len(chunk)
        assert received <= 100 * 2**20
        assert pool.num_in_use == 0


def test_bomb_undecoded_is_just_its_bytes(server: MisbehavingServer) -> None:
    with open_pool(server, max_decoded_size=CAP) as pool:
        response = pool.urlopen("GET", "/gzip-bomb", decode_content=False)
        assert response.data == gzip_bomb()
        assert response.headers["content-encoding"] == "gzip"


def test_nested_encoding_is_decoded_or_refused(server: MisbehavingServer) -> None:
    """'deflate, gzip' is either fully decoded or a DecodeError: never half-decoded bytes."""
    with open_pool(server) as pool:
        try:
            response = pool.urlopen("GET", "/nested-encoding", retries=0)
        except DecodeError:
            pass
        else:
            assert response.data == NESTED_PLAIN
        assert_healthy(pool)


def test_corrupt_gzip_is_a_decode_error(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        with pytest.raises((DecodeError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", "/bad-gzip", retries=0)
        assert_cause(excinfo.value, DecodeError)
        assert_healthy(pool)


@pytest.mark.timeout(20)
def test_endless_body_is_capped_when_preloaded(server: MisbehavingServer) -> None:
    """An identity body that never ends must not be buffered without bound either.

    (The server gives up after 64 MiB so that a pool without the cap stays bounded here.)
    """
    with open_pool(server, max_decoded_size=CAP) as pool:
        started = time.monotonic()
        with pytest.raises((DecodeError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", "/endless?max_mb=64", retries=0)
        assert_cause(excinfo.value, BodyTooLargeError)
        assert time.monotonic() - started < 5
        assert_healthy(pool)


# -- hostile pages the pool must carry unharmed ----------------------------------------------


def test_page_with_100000_links(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        response = pool.urlopen("GET", "/links")
        assert response.status == 200
        assert response.data.count(b"<a href=") == 100000
        assert_healthy(pool)


def test_page_with_a_64_kb_url(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        data = pool.urlopen("GET", "/long-url").data
        match = re.search(rb'href="([^"]+)"', data)
        assert match is not None and len(match.group(1)) == 65536


def test_utf16_page_bytes_are_untouched(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        response = pool.urlopen("GET", "/utf16")
        assert response.headers["content-type"] == "text/html; charset=utf-16"
        assert response.data.startswith(b"\xff\xfe")
        assert UTF16_TEXT in response.data.decode("utf-16")


def test_invalid_utf8_with_a_lying_charset_is_returned_as_bytes(
    server: MisbehavingServer,
) -> None:
    with open_pool(server) as pool:
        assert pool.urlopen("GET", "/bad-utf8").data == BAD_UTF8


def test_endless_calendar_is_just_pages(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        path, seen = "/cal/2024-12-30", []
        for _ in range(5):
            response = pool.urlopen("GET", path)
            assert response.status == 200
            seen.append(path)
            match = re.search(rb'href="(/cal/[0-9-]+)"', response.data)
            assert match is not None
            path = match.group(1).decode()
        assert seen[-1] == "/cal/2025-01-03"
        assert pool.num_connections == 1


# -- redirects --------------------------------------------------------------------------------


def test_redirect_loop_uses_up_the_retries(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        with pytest.raises(MaxRetryError):
            pool.urlopen("GET", "/redirect-loop", retries=3)
        assert server.count("/redirect-loop") == 4
        assert pool.num_requests == 4
        assert_healthy(pool)


def test_fifty_redirects(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        with pytest.raises(MaxRetryError):
            pool.urlopen("GET", "/redirect-chain/50")
        assert server.count() == 4
        retries = Retry(total=60, redirect=50)
        response = pool.urlopen("GET", "/redirect-chain/50", retries=retries)
        assert (response.status, response.data) == (200, b"ok")
        assert server.count() == 4 + 51
        assert pool.num_requests == 4 + 51
        assert pool.num_connections == 1
        assert_healthy(pool)


def test_redirect_false_returns_the_3xx(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        response = pool.urlopen("GET", "/redirect-loop", redirect=False)
        assert response.status == 302
        assert response.get_redirect_location() == "/redirect-loop"
        assert server.count() == 1


NON_HTTP = ["/redirect-file", "/redirect-ftp", "/redirect-javascript"]


def _outcome(call) -> int | None:
    """The status the call returned, or None when it raised an error from the tree."""
    try:
        return call().status
    except HTTPError:
        return None


@pytest.mark.parametrize("path", NON_HTTP)
def test_pool_never_follows_a_non_http_redirect(server: MisbehavingServer, path: str) -> None:
    with open_pool(server) as pool:
        status = _outcome(lambda: pool.urlopen("GET", path))
        assert status in (None, 302)
        assert [a.path for a in server.arrivals] == [path]
        assert_healthy(pool)


@pytest.mark.parametrize("path", NON_HTTP)
def test_manager_never_follows_a_non_http_redirect(server: MisbehavingServer, path: str) -> None:
    with PoolManager(timeout=2.0) as manager:
        status = _outcome(lambda: manager.urlopen("GET", server.url(path)))
        assert status in (None, 302)
        assert [a.path for a in server.arrivals] == [path]


_TARGET = re.compile(r"[!-~]+")  # printable ASCII, no space


def _assert_no_injection(server: MisbehavingServer) -> None:
    for arrival in server.arrivals:
        assert arrival.header("x-injected") is None, arrival.head
        assert b"\r" not in arrival.head.replace(b"\r\n", b"")
        assert _TARGET.fullmatch(arrival.target), arrival.target
        assert arrival.head.split(b"\r\n", 1)[0].endswith(b" HTTP/1.1")


@pytest.mark.parametrize("path", ["/redirect-crlf", "/redirect-cr", "/redirect-crlf-encoded"])
def test_crlf_in_location_never_injects(server: MisbehavingServer, path: str) -> None:
    with open_pool(server) as pool:
        _outcome(lambda: pool.urlopen("GET", path))
        _assert_no_injection(server)
        assert_healthy(pool)
    with PoolManager(timeout=2.0) as manager:
        _outcome(lambda: manager.urlopen("GET", server.url(path)))
        _assert_no_injection(server)


def test_folded_location_is_not_followed(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        _outcome(lambda: pool.urlopen("GET", "/redirect-crlf", retries=0))
        assert {a.path for a in server.arrivals} == {"/redirect-crlf"}
