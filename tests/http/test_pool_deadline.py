"""``Timeout.total``: one deadline for a whole attempt, against peers that trickle.

A slowloris peer sends one byte just inside every read timeout, so the read timeout alone never
fires. ``total`` bounds connect, send, head and body together; a connection cut by it is closed
and its slot returned, and the pool carries on.
"""

from __future__ import annotations

import time

import pytest

from crawler.http import (
    ConnectTimeoutError,
    HTTPConnectionPool,
    HTTPSConnectionPool,
    MaxRetryError,
    ReadTimeoutError,
    Timeout,
)
from tests.kit.pools import assert_cause, assert_healthy, make_pool
from tests.kit.servers import MisbehavingServer, unresponsive_listener

# A byte every 0.2 s: far inside the 1 s read timeout, and 20 s for the whole body.
TRICKLE = "/trickle?interval=0.2&bytes=100"
DEADLINE = Timeout(read=1, total=2)


@pytest.mark.parametrize("part", ["body", "head"])
def test_total_cuts_a_trickling_preloaded_response(server: MisbehavingServer, part: str) -> None:
    with make_pool(server) as pool:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError, match="total timeout"):
            pool.urlopen("GET", f"{TRICKLE}&part={part}", timeout=DEADLINE, retries=False)
        assert 1.9 <= time.monotonic() - started < 2.5
        assert_healthy(pool, timeout=DEADLINE)
        assert server.connections_accepted == 2  # the timed-out connection was not reused


def test_total_cuts_a_streamed_body_and_returns_the_slot(server: MisbehavingServer) -> None:
    with make_pool(server) as pool:
        started = time.monotonic()
        response = pool.urlopen("GET", TRICKLE, timeout=DEADLINE, preload_content=False)
        assert response.status == 200 and pool.num_in_use == 1
        got = b""
        with pytest.raises(ReadTimeoutError, match="total timeout"):
            while chunk := response.read1(1024):
                got += chunk
        assert 1.9 <= time.monotonic() - started < 2.5
        assert 3 <= len(got) < 15  # what arrived in time was handed out as it came
        assert pool.num_in_use == 0
        assert_healthy(pool, timeout=DEADLINE)


def test_total_counts_the_retries_one_attempt_at_a_time(server: MisbehavingServer) -> None:
    with make_pool(server) as pool:
        started = time.monotonic()
        with pytest.raises(MaxRetryError) as excinfo:
            pool.urlopen("GET", TRICKLE, timeout=Timeout(read=1, total=0.6), retries=1)
        assert_cause(excinfo.value, ReadTimeoutError)
        assert 1.1 <= time.monotonic() - started < 2.0  # two attempts of 0.6 s
        assert server.count("/trickle") == 2
        assert_healthy(pool, timeout=DEADLINE)


def test_total_starts_afresh_for_each_request_on_a_kept_connection(
    server: MisbehavingServer,
) -> None:
    with make_pool(server) as pool:
        timeout = Timeout(read=1, total=0.5)
        assert pool.urlopen("GET", "/ok", timeout=timeout).data == b"ok"
        time.sleep(0.7)  # past the first request's deadline
        assert pool.urlopen("GET", "/ok?delay=0.2", timeout=timeout).data == b"ok"
        assert (pool.num_connections, server.connections_accepted) == (1, 1)


def test_total_without_read_limit_still_bounds_each_wait(server: MisbehavingServer) -> None:
    with make_pool(server) as pool:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            pool.urlopen("GET", "/never-answer?hold=5", timeout=Timeout(total=0.5), retries=False)
        assert 0.4 <= time.monotonic() - started < 1.0
        assert_healthy(pool, timeout=DEADLINE)


def test_total_covers_connect() -> None:
    with (
        unresponsive_listener() as port,
        HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=True) as pool,
    ):
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError):
            pool.urlopen("GET", "/", timeout=Timeout(connect=10, total=0.5), retries=False)
        assert 0.4 <= time.monotonic() - started < 1.0
        assert pool.num_in_use == 0
        with pytest.raises(ConnectTimeoutError):
            pool.urlopen("GET", "/", timeout=Timeout(total=0.3), retries=False, pool_timeout=1)
        assert pool.num_in_use == 0


def test_total_covers_the_tls_handshake(server: MisbehavingServer) -> None:
    # A plain-TCP peer never answers the ClientHello: the handshake waits on the deadline.
    pool = HTTPSConnectionPool(server.host, server.port, maxsize=1, block=True)
    with pool:
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError):
            pool.urlopen("GET", "/", timeout=Timeout(connect=10, total=0.5), retries=False)
        assert 0.4 <= time.monotonic() - started < 1.0
        assert pool.num_in_use == 0


def test_read_stays_exact_and_read1_returns_what_arrived(server: MisbehavingServer) -> None:
    with make_pool(server) as pool:
        response = pool.urlopen("GET", "/trickle?interval=0.05&bytes=6", preload_content=False)
        assert response.read(4) == b"tttt"  # waits for all four
        assert response.read1(100) == b"t"  # one byte arrived: no waiting for 100
        assert response.read1(100) == b"t"
        assert response.read1(100) == b""
        assert pool.num_in_use == 0
        chunked = pool.urlopen("GET", "/chunked", preload_content=False)
        got = b""
        while piece := chunked.read1(4):
            assert len(piece) <= 4
            got += piece
        assert got == b"hello world"


def test_read1_decodes(server: MisbehavingServer) -> None:
    with make_pool(server) as pool:
        plain = pool.urlopen("GET", "/nested-encoding").data
        response = pool.urlopen("GET", "/nested-encoding", preload_content=False)
        got = b""
        while piece := response.read1(7):
            assert len(piece) <= 7
            got += piece
        assert got == plain and plain
        assert pool.num_in_use == 0
