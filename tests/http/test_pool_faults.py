"""The pool against misbehaving servers: broken connections, broken framing, stalls, retries.

Every failure must end in a clear exception from the crawler.http tree within the timeouts,
and leave the pool whole: nothing checked out, and a `block=True` caller gets a slot at once.
"""

from __future__ import annotations

import functools
import gc
import socket
import time

import pytest

from crawler.http import (
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPConnectionPool,
    MaxRetryError,
    ProtocolError,
    ReadTimeoutError,
    Retry,
    Timeout,
)
from tests.kit.pools import assert_cause, assert_healthy, make_pool
from tests.kit.servers import MisbehavingServer, unresponsive_listener

# Two slots and a 1 s timeout unless a test says otherwise.
open_pool = functools.partial(make_pool, maxsize=2, timeout=1.0)


# (path, urlopen keywords, expected cause, attempts with retries=1: exact, or None for 1 or 2)
FAILURES = [
    ("/reset-before-status", {}, ProtocolError, 2),
    ("/reset-mid-body", {}, ProtocolError, 2),
    ("/close-after-headers", {}, ProtocolError, 2),
    ("/short-body", {}, ProtocolError, 2),
    ("/bad-chunked", {}, ProtocolError, None),
    ("/chunked-truncated", {}, ProtocolError, 2),
    ("/garbage-status", {}, ProtocolError, None),
    ("/http09", {}, ProtocolError, None),
    ("/huge-header", {}, ProtocolError, None),
    ("/many-headers", {}, ProtocolError, None),
    ("/trickle?interval=1&bytes=5", {"timeout": 0.5}, ReadTimeoutError, 2),
    ("/trickle?interval=1&bytes=5&part=head", {"timeout": 0.5}, ReadTimeoutError, 2),
    ("/never-answer?hold=5", {"timeout": 0.5}, ReadTimeoutError, 2),
]


@pytest.mark.parametrize(
    ("path", "kw", "cause", "attempts"), FAILURES, ids=[f[0].split("?")[0] for f in FAILURES]
)
def test_failure_is_clear_bounded_and_frees_the_slot(
    server: MisbehavingServer, path: str, kw: dict, cause: type, attempts: int | None
) -> None:
    # maxsize=1: any slot leaked by the failure would starve the health check below.
    with open_pool(server, maxsize=1) as pool:
        started = time.monotonic()
        with pytest.raises((cause, MaxRetryError)) as excinfo:
            pool.urlopen("GET", path, retries=1, **kw)
        elapsed = time.monotonic() - started
        assert_cause(excinfo.value, cause)
        assert elapsed < 4.0
        arrived = server.count(path.split("?")[0])
        assert arrived == attempts if attempts is not None else arrived in (1, 2)
        assert_healthy(pool)
        assert server.max_open <= 1  # retries never overlap a connection still open


def test_get_reset_is_retried_n_plus_one_times(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        with pytest.raises(MaxRetryError) as excinfo:
            pool.urlopen("GET", "/reset-before-status", retries=2)
        assert isinstance(excinfo.value.reason, ProtocolError)
        assert server.count("/reset-before-status") == 3
        # A reset connection is never reused: one new connection per attempt.
        assert (pool.num_connections, pool.num_requests) == (3, 3)
        assert_healthy(pool)


def test_retries_zero_means_one_attempt(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        with pytest.raises((ProtocolError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", "/reset-before-status", retries=0)
        assert_cause(excinfo.value, ProtocolError)
        assert server.count("/reset-before-status") == 1
        assert pool.num_requests == 1


def test_post_that_reached_the_server_is_not_resent(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        with pytest.raises((ProtocolError, MaxRetryError)) as excinfo:
            pool.urlopen("POST", "/reset-before-status", body=b"pay=1", retries=3)
        assert_cause(excinfo.value, ProtocolError)
        assert server.count("/reset-before-status") == 1
        assert server.requests_to("/reset-before-status")[0].body == b"pay=1"
        assert_healthy(pool)


def test_refused_connection_is_a_protocol_error_and_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` now, so every connect is refused.
    with HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=True, timeout=1) as pool:
        started = time.monotonic()
        with pytest.raises(MaxRetryError) as excinfo:
            pool.urlopen("POST", "/", body=b"x", retries=2)
        assert isinstance(excinfo.value.reason, ProtocolError)
        assert time.monotonic() - started < 3
        assert pool.num_in_use == 0
        # The slot is back: the next caller fails the same way instead of waiting.
        with pytest.raises(MaxRetryError):
            pool.urlopen("GET", "/", retries=0, pool_timeout=0.5)


def test_connect_timeout_frees_the_slot() -> None:
    with unresponsive_listener() as port:
        pool = HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=True)
        with pool:
            timeout = Timeout(connect=0.3, read=1.0)
            started = time.monotonic()
            with pytest.raises((ConnectTimeoutError, MaxRetryError)) as excinfo:
                pool.urlopen("GET", "/", timeout=timeout, retries=1)
            assert_cause(excinfo.value, ConnectTimeoutError)
            assert 0.5 <= time.monotonic() - started < 3
            assert pool.num_in_use == 0
            with pytest.raises((ConnectTimeoutError, MaxRetryError)) as excinfo:
                pool.urlopen("GET", "/", timeout=timeout, retries=0, pool_timeout=0.5)
            assert_cause(excinfo.value, ConnectTimeoutError)


def test_per_call_timeout_overrides_and_timed_out_connection_is_not_reused(
    server: MisbehavingServer,
) -> None:
    with open_pool(server, maxsize=1, timeout=30.0) as pool:
        started = time.monotonic()
        with pytest.raises((ReadTimeoutError, MaxRetryError)) as excinfo:
            pool.urlopen("GET", "/never-answer?hold=5", timeout=0.3, retries=0)
        assert_cause(excinfo.value, ReadTimeoutError)
        assert time.monotonic() - started < 2
        assert pool.num_connections == 1
        assert_healthy(pool)
        assert pool.num_connections == 2


def test_stale_keep_alive_connection_is_reopened_without_a_retry(
    server: MisbehavingServer,
) -> None:
    with open_pool(server, maxsize=1) as pool:
        first = pool.urlopen("GET", "/keepalive-close", retries=0)
        assert first.data == b"ok"
        time.sleep(0.2)  # the server has closed the idle socket by now
        second = pool.urlopen("GET", "/keepalive-close", retries=0)
        assert second.data == b"ok"
        assert pool.num_connections == 2
        assert pool.num_requests == 2
        assert server.count("/keepalive-close") == 2


def test_stale_connection_detected_before_a_post_is_sent(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        pool.urlopen("POST", "/keepalive-close", body=b"a", retries=0)
        time.sleep(0.2)
        response = pool.urlopen("POST", "/keepalive-close", body=b"b", retries=0)
        assert response.status == 200
        assert [a.body for a in server.requests_to("/keepalive-close")] == [b"a", b"b"]
        assert pool.num_connections == 2


def test_keep_alive_reuse_counts(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        assert (pool.num_connections, pool.num_idle, pool.num_in_use) == (0, 0, 0)
        for _ in range(3):
            assert pool.urlopen("GET", "/ok").data == b"ok"
        assert (pool.num_connections, pool.num_requests) == (1, 3)
        assert (pool.num_idle, pool.num_in_use) == (1, 0)
        chunked = pool.urlopen("GET", "/chunked")
        assert chunked.data == b"hello world"
        assert pool.urlopen("GET", "/ok").data == b"ok"
        assert pool.num_connections == 1


# -- Retry objects and Retry-After --------------------------------------------------------


def test_status_forcelist_retries_until_success(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        retries = Retry(total=2, status_forcelist=[503], backoff_factor=0)
        response = pool.urlopen("GET", "/flaky?fail=2", retries=retries)
        assert (response.status, response.data) == (200, b"ok")
        assert server.count("/flaky") == 3
        assert pool.num_requests == 3
        assert pool.num_in_use == 0


def test_status_forcelist_exhausted(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        retries = Retry(total=2, status_forcelist=[503], backoff_factor=0)
        try:
            response = pool.urlopen("GET", "/flaky?fail=9", retries=retries)
        except MaxRetryError:
            pass
        else:
            assert response.status == 503
        assert server.count("/flaky") == 3
        assert_healthy(pool)


def test_retry_after_is_respected(server: MisbehavingServer) -> None:
    with open_pool(server) as pool:
        retries = Retry(total=2, status_forcelist=[503], backoff_factor=0)
        started = time.monotonic()
        response = pool.urlopen("GET", "/flaky?fail=1&retry_after=1", retries=retries)
        elapsed = time.monotonic() - started
        assert response.status == 200
        assert server.count("/flaky") == 2
        assert 0.9 <= elapsed < 3
        arrivals = server.requests_to("/flaky")
        assert arrivals[1].time - arrivals[0].time >= 0.9


@pytest.mark.timeout(30)
def test_hostile_retry_after_does_not_stall_the_caller(server: MisbehavingServer) -> None:
    """503 with Retry-After: 3600 must not park a caller for an hour (or minutes): the pool
    answers within its timeouts, with the 503 itself or an error from the tree."""
    with open_pool(server) as pool:
        started = time.monotonic()
        try:
            response = pool.urlopen("GET", "/unavailable")
        except MaxRetryError:
            pass
        else:
            assert response.status == 503
            assert response.headers["retry-after"] == "3600"
        assert time.monotonic() - started < 5
        assert_healthy(pool)


# -- slots under blocking -----------------------------------------------------------------


def test_block_true_waits_then_raises_empty_pool(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        held = pool.urlopen("GET", "/ok?size=100000", preload_content=False)
        assert pool.num_in_use == 1
        started = time.monotonic()
        with pytest.raises(EmptyPoolError):
            pool.urlopen("GET", "/ok", pool_timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 2
        assert pool.num_connections == 1
        held.release_conn()
        assert_healthy(pool)


def test_failure_while_another_slot_is_held(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=2) as pool:
        held = pool.urlopen("GET", "/ok?size=100000", preload_content=False)
        with pytest.raises((ProtocolError, MaxRetryError)):
            pool.urlopen("GET", "/reset-before-status", retries=0)
        assert pool.num_in_use == 1
        assert pool.urlopen("GET", "/ok", pool_timeout=1).data == b"ok"
        assert len(held.read()) == 100000
        assert pool.num_in_use == 0
        # held, the reset one (discarded), and a new one for /ok: never more than 2 at once.
        assert pool.num_connections == 3
        assert server.max_open <= 2


# -- streaming responses (preload_content=False) ------------------------------------------


def test_fully_read_stream_returns_the_connection(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/ok?size=100000", preload_content=False)
        assert pool.num_in_use == 1
        assert response.read() == b"o" * 100000
        assert (pool.num_in_use, pool.num_idle) == (0, 1)
        assert_healthy(pool)
        assert pool.num_connections == 1


def test_released_unread_stream_leaves_no_leftovers(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/ok?size=200000", preload_content=False)
        assert response.read(10) == b"o" * 10
        response.release_conn()
        assert pool.num_in_use == 0
        # The rest of the old body must never be read as the next response.
        assert_healthy(pool)


def test_closed_stream_returns_the_slot(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/ok?size=200000", preload_content=False)
        response.close()
        assert pool.num_in_use == 0
        assert_healthy(pool)


def test_dropped_stream_does_not_starve_a_blocking_caller(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/ok?size=200000", preload_content=False)
        assert response.status == 200
        del response
        gc.collect()
        assert pool.urlopen("GET", "/ok", pool_timeout=1).data == b"ok"
        assert pool.num_in_use == 0


def test_exception_inside_with_returns_the_slot(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        with (
            pytest.raises(RuntimeError, match="caller failed"),
            pool.urlopen("GET", "/ok?size=200000", preload_content=False) as response,
        ):
            assert response.read(5) == b"ooooo"
            raise RuntimeError("caller failed")
        assert_healthy(pool)


def test_exception_with_try_finally_release(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        with pytest.raises(KeyError):
            response = pool.urlopen("GET", "/ok?size=200000", preload_content=False)
            try:
                raise KeyError("caller failed")
            finally:
                response.release_conn()
        assert_healthy(pool)


@pytest.mark.timeout(20)
def test_endless_body_streamed_then_released(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/endless", preload_content=False)
        received = 0
        for chunk in response.stream(16384):
            received += len(chunk)
            if received >= 256 * 1024:
                break
        started = time.monotonic()
        response.release_conn()  # must not try to drain an endless body
        assert time.monotonic() - started < 2
        assert pool.num_in_use == 0
        assert_healthy(pool)


@pytest.mark.timeout(20)
def test_endless_close_delimited_body_streamed_then_closed(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/endless?framing=close", preload_content=False)
        received = 0
        while received < 100000:
            chunk = response.read(100000 - received)  # may be short, like io.BufferedIOBase
            assert chunk
            received += len(chunk)
        response.close()
        assert pool.num_in_use == 0
        assert_healthy(pool)


def test_reset_while_streaming(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/reset-mid-body", preload_content=False, retries=0)
        assert response.status == 200
        with pytest.raises(ProtocolError):
            response.read()
        assert pool.num_in_use == 0
        assert_healthy(pool)


def test_short_body_while_streaming(server: MisbehavingServer) -> None:
    with open_pool(server, maxsize=1) as pool:
        response = pool.urlopen("GET", "/short-body", preload_content=False)
        with pytest.raises(ProtocolError):
            for _ in response.stream(16):
                pass
        assert pool.num_in_use == 0
        assert_healthy(pool)
