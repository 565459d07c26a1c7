"""The pool and the manager under threads: every request succeeds, `maxsize` is never exceeded."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from crawler.http import MaxRetryError, PoolManager, ProtocolError
from tests.kit.pools import make_pool
from tests.kit.servers import ConcurrencyServer, MisbehavingServer


def run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run `work(i)` in `count` threads released at once; return what they raised."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            work(index)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return errors


@pytest.mark.timeout(60)
@pytest.mark.parametrize("delay", [0, 0.002])
def test_8_threads_50_requests_never_exceed_maxsize(
    concurrency_server: ConcurrencyServer, delay: float
) -> None:
    pool = make_pool(concurrency_server, maxsize=4, timeout=5)
    statuses: list[int] = []

    def work(index: int) -> None:
        for i in range(50):
            response = pool.urlopen("GET", f"/t{index}/{i}?delay={delay}", pool_timeout=30)
            assert response.data == b"ok"
            statuses.append(response.status)

    with pool:
        errors = run_threads(8, work)
        assert errors == []
        assert statuses == [200] * 400
        assert concurrency_server.count() == 400
        assert pool.num_requests == 400
        assert pool.num_connections <= 4
        assert concurrency_server.max_open <= 4
        assert concurrency_server.connections_accepted == pool.num_connections
        assert (pool.num_in_use, pool.num_idle) == (0, pool.num_connections)


@pytest.mark.timeout(60)
def test_streaming_threads_share_four_slots(concurrency_server: ConcurrencyServer) -> None:
    pool = make_pool(concurrency_server, maxsize=4, timeout=5)
    in_use_seen: list[int] = []

    def work(index: int) -> None:
        for i in range(25):
            response = pool.urlopen("GET", f"/s{index}/{i}", preload_content=False)
            in_use_seen.append(pool.num_in_use)
            if i % 3 == 0:
                response.release_conn()
            elif i % 3 == 1:
                assert response.read() == b"ok"
            else:
                response.close()

    with pool:
        assert run_threads(8, work) == []
        assert max(in_use_seen) <= 4
        assert concurrency_server.max_open <= 4
        assert pool.num_in_use == 0


@pytest.mark.timeout(60)
def test_manager_with_more_origins_than_pools() -> None:
    addresses = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    servers = [ConcurrencyServer(addresses, delay=0.001, lifetime=60) for _ in range(2)]
    for srv in servers:
        srv.start()
    try:
        origins = [srv.url("", host=a) for srv in servers for a in addresses]
        assert len(origins) == 6
        manager = PoolManager(num_pools=2, maxsize=2, block=True, timeout=5)

        def work(index: int) -> None:
            rng = random.Random(index)
            for i in range(40):
                origin = rng.choice(origins)
                if i % 2:
                    response = manager.urlopen("GET", f"{origin}/m{index}/{i}")
                    assert response.data == b"ok"
                else:
                    # Hold a streaming response while other threads evict pools.
                    response = manager.urlopen(
                        "GET", f"{origin}/m{index}/{i}", preload_content=False
                    )
                    assert response.read() == b"ok"

        with manager:
            assert run_threads(12, work) == []
        for srv in servers:
            assert srv.errors == []
        # Exactly one arrival per request: no request was re-sent after its connection was
        # closed under it (a retry would hide that for GET).
        assert sum(srv.count() for srv in servers) == 12 * 40
        for srv in servers:
            # Every origin of this server was used (its Host header seen on a connection).
            assert len(srv.max_open_per_host) == len(addresses)
    finally:
        for srv in servers:
            srv.stop()


@pytest.mark.timeout(60)
def test_failures_under_threads_never_leak_or_exceed_slots(server: MisbehavingServer) -> None:
    paths = ["/ok", "/reset-before-status", "/short-body", "/ok?size=50000", "/bad-chunked"]
    pool = make_pool(server, maxsize=2, timeout=2)
    outcomes: list[str] = []

    def work(index: int) -> None:
        for i in range(30):
            path = paths[(index + i) % len(paths)]
            try:
                response = pool.urlopen("GET", path, retries=1, pool_timeout=20)
            except (ProtocolError, MaxRetryError):
                outcomes.append("error")
            else:
                assert response.status == 200
                outcomes.append("ok")

    with pool:
        assert run_threads(8, work) == []
        assert len(outcomes) == 240
        assert outcomes.count("ok") == 8 * 30 * 2 // 5
        assert pool.num_in_use == 0
        assert server.max_open <= 2
        assert pool.urlopen("GET", "/ok", pool_timeout=1).data == b"ok"
