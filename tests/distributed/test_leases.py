"""Host leases and fencing on a real PostgreSQL, two stores as two nodes of one run.

No crawl here: the store's node methods called directly, with the clocks the server keeps, so
each rule (one owner per host, takeover only after expiry plus grace, stale writes refused,
nothing lost) is checked on its own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from crawler.engine import nodes as nodes_module
from crawler.engine.nodes import Node, lease_grace
from crawler.engine.politeness import Politeness, PolitenessPolicy
from crawler.errors import LockedError
from crawler.messages import NewRequest, Outcome, Page
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.store.postgres import Store
from crawler.urls import fingerprint
from crawler.worker.runner import JobRunner
from tests.kit.postgres import PostgresServer
from tests.kit.reads import HostReadsLogged

HOST = "a.example"
STALE = 100.0


def request(path: str, host: str = HOST) -> NewRequest:
    url = f"http://{host}{path}"
    return NewRequest(fp=fingerprint(url), url=url, host=host)


def page_outcome(fp: int, url: str) -> Outcome:
    page = Page(
        url=url, status=200, headers="{}", content_type="text/html", size=1, body=b"x",
        content_hash=None, etag=None, last_modified=None, location=None, depth=0,
        fetched_at=1.0, elapsed_ms=1.0,
    )  # fmt: skip
    return Outcome(fp, url, HOST, "done", page=page, items=({"n": 1},))


@pytest.fixture
def nodes(postgres: PostgresServer) -> Iterator[tuple[Store, Store]]:
    db = postgres.database()
    a, b = Store(db), Store(db)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_the_first_node_starts_the_run_the_second_joins_it(nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    run_a, node_a, started_a, _ = a.join_run("s", {}, stale_after=STALE)
    run_b, node_b, started_b, _ = b.join_run("s", {}, stale_after=STALE)
    assert (run_a, started_a, started_b) == (run_b, True, False) and node_a != node_b
    assert a.busy_elsewhere(STALE)  # a is still seeding: b must not see an ended crawl
    a.seeded()
    assert not b.busy_elsewhere(STALE)


def test_the_last_node_to_leave_ends_the_run_past_a_dead_node_of_this_machine(
    nodes: tuple[Store, Store], postgres: PostgresServer
) -> None:
    """A node killed while it held no lease is never reaped with a lease, and its last
    heartbeat is fresh: the last live node to leave must still end the run."""
    a, b = nodes
    run, node_a, _, _ = a.join_run("s", {}, stale_after=STALE)
    a.seeded()
    _, node_b, _, _ = b.join_run("s", {}, stale_after=STALE)
    # b's process is gone (a pid no process has: a real child, started and reaped).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    b.conn.execute("UPDATE nodes SET pid = %s WHERE id = %s", (dead.pid, node_b))
    assert a.leave(exit_code=0, finish_reason="finished", stats={"pages": 3}, stale_after=STALE)
    runs = a.conn.execute("SELECT id, exit_code, finish_reason FROM runs").fetchall()
    assert runs == [(run, 0, "finished")]
    states = dict(a.conn.execute("SELECT id, state FROM nodes").fetchall())
    assert states == {node_a: "done", node_b: "dead"}


def test_another_spider_is_refused_while_a_run_lives(
    nodes: tuple[Store, Store], postgres: PostgresServer
) -> None:
    a, b = nodes
    a.join_run("s", {}, stale_after=STALE)
    with pytest.raises(LockedError):
        b.join_run("other", {}, stale_after=STALE)


def test_a_host_has_one_owner_and_take_needs_the_lease(nodes: tuple[Store, Store]) -> None:
    a, b = nodes
    a.join_run("s", {}, stale_after=STALE)
    b.join_run("s", {}, stale_after=STALE)
    a.add([request(f"/{i}") for i in range(4)])
    assert b.take(HOST, 4, 1e12) == []  # no lease: nothing handed out
    assert [c[0] for c in a.claim([HOST], 5, 30)] == [HOST]
    assert b.claim([HOST], 5, 30) == []
    assert len(a.take(HOST, 4, 1e12)) == 4
    # Renewal keeps it; a renewal with a wrong epoch does not.
    assert a.renew([(HOST, 1, 0.0, 0.0)], 30) == {HOST}
    assert a.renew([(HOST, 7, 0.0, 0.0)], 30) == set()


def test_takeover_requeues_the_dead_owners_rows_and_fences_its_late_writes(
    nodes: tuple[Store, Store],
) -> None:
    a, b = nodes
    a.join_run("s", {}, stale_after=STALE)
    b.join_run("s", {}, stale_after=STALE)
    a.add([request("/1"), request("/2")])
    a.claim([HOST], 1, 0.5)
    jobs = a.take(HOST, 2, 1e12)
    assert b.reap(grace=60) == 0  # expired, but not past the grace: still a's
    # Past expiry plus grace (a grace of -10 s stands in for the time passing).
    assert b.reap(grace=-10) == 2
    ((host, epoch, _next, _delay),) = b.claim([HOST], 1, 30)
    assert host == HOST and epoch > 1  # a new epoch: a's is stale
    taken = b.take(HOST, 2, 1e12)
    assert {j.fp for j in taken} == {j.fp for j in jobs}
    # a wakes up and writes what it fetched: refused, nothing stored, rows stay b's.
    stats = a.record([page_outcome(j.fp, j.url) for j in jobs], run_id=1)
    assert stats.pages == 0 and a.refused == 2
    assert a.conn.execute("SELECT count(*) FROM pages").fetchone() == (0,)
    assert a.requeue([j.fp for j in jobs]) == 0  # and it cannot put b's rows back
    stats = b.record([page_outcome(j.fp, j.url) for j in taken], run_id=1)
    assert stats.pages == 2 and b.refused == 0
    assert b.conn.execute("SELECT state, count(*) FROM frontier GROUP BY state").fetchall() == [
        ("done", 2)
    ]


def test_a_release_hands_the_politeness_clock_to_the_next_owner(
    nodes: tuple[Store, Store],
) -> None:
    a, b = nodes
    a.join_run("s", {}, stale_after=STALE)
    b.join_run("s", {}, stale_after=STALE)
    (claimed,) = a.claim([HOST], 1, 30)
    a.release([(HOST, claimed[1], 1234.5, 1.0)])
    assert b.claim([HOST], 1, 30) == [(HOST, claimed[1] + 1, 1234.5, 1.0)]


def test_the_last_node_to_leave_ends_the_run_with_summed_stats(
    nodes: tuple[Store, Store],
) -> None:
    a, b = nodes
    run, _, _, _ = a.join_run("s", {}, stale_after=STALE)
    b.join_run("s", {}, stale_after=STALE)
    assert not a.leave(exit_code=0, finish_reason="finished", stats={"pages": 3}, stale_after=STALE)
    assert b.leave(exit_code=0, finish_reason="finished", stats={"pages": 4}, stale_after=STALE)
    row = b.conn.execute("SELECT exit_code, stats FROM runs WHERE id = %s", (run,)).fetchone()
    assert row is not None and row[0] == 0 and '"pages":7' in row[1].replace(" ", "")


@pytest.mark.parametrize("timeout", [1.0, 5.0, 30.0, 120.0])
def test_the_lease_grace_outlasts_any_request(timeout: float) -> None:
    settings = Settings(timeout=timeout)
    runner = JobRunner(Spider(), settings)
    assert lease_grace(settings) > runner.body_deadline


def test_hosts_with_work_among_probes_only_the_hosts_given(nodes: tuple[Store, Store]) -> None:
    a, _ = nodes
    a.join_run("s", {}, stale_after=STALE)
    a.add([request("/1", "a.example"), request("/2", "b.example"), request("/3", "c.example")])
    later = request("/4", "d.example")
    a.add([later])
    a.conn.execute("UPDATE frontier SET not_before = 1e12 WHERE fp = %s", (later.fp,))
    now = 1e9
    assert sorted(a.hosts_with_work(now)) == ["a.example", "b.example", "c.example"]
    # Only the hosts given, and of those only the ones with an entry due now.
    among = a.hosts_with_work_among(["b.example", "c.example", "d.example", "e.example"], now)
    assert sorted(among) == ["b.example", "c.example"]
    assert a.hosts_with_work_among([], now) == []
    assert a.claim(["b.example"], 1, 30.0)
    assert len(a.take("b.example", 5, now)) == 1  # its one entry in flight: none queued
    assert a.hosts_with_work_among(["b.example", "c.example"], now) == ["c.example"]


class WindowsLogged(HostReadsLogged, Store):
    pass


def test_a_node_reads_the_runs_hosts_a_window_at_a_time_and_claims_its_share(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every node read every queued host of the run every 0.2-0.5 s: 638 ms at 100k hosts.
    monkeypatch.setattr(nodes_module, "WINDOW", 4)
    hosts = [f"h{i}.example" for i in range(10)]
    db = postgres.database()
    clock = [0.0]
    made = []
    try:
        for _ in range(2):
            store = WindowsLogged(db)
            politeness = Politeness(PolitenessPolicy())
            node = Node(store, Settings(lease_ttl=30), politeness, clock=lambda: clock[0])
            node.join("s", {})
            node.live_nodes = 2
            made.append((store, node))
        (a, node_a), (b, node_b) = made
        a.add([request("/", h) for h in hosts])
        for _ in range(4):  # windows of 4, 4 and 2: the round is complete at the third
            clock[0] += 1.0
            node_a.hosts(a, 1e9)
        assert a.reads == [4, 4, 2, 4]  # the fourth read starts the next round
        assert node_a._run_hosts() == 10 and node_a._share() == 5
        assert len(node_a.leases) == 5  # its share, claimed from several windows
        # Dispatch reads the node's own hosts a window at a time too (by name).
        held = sorted(node_a.leases)
        assert node_a.hosts(a, 1e9, "", 2) == (held[:2], held[1])
        assert node_a.hosts(a, 1e9, held[1], 2) == (held[2:4], held[3])
        a.take(held[4], 1, 1e9)  # its one URL in flight: no work left
        assert node_a.hosts(a, 1e9, held[3], 2) == ([], None)  # the last window
        assert held[4] not in node_a._own_work and len(node_a._own_work) == 4
        for _ in range(3):
            clock[0] += 1.0
            node_b.hosts(b, 1e9)
        assert sorted([*node_a.leases, *node_b.leases]) == sorted(hosts)  # the rest, to b
    finally:
        for store, _node in made:
            store.close()
