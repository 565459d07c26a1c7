"""A node stopped (SIGSTOP) past its leases and resumed after the others took its hosts.

Three nodes crawl the 60-host ``Mesh`` site, each with its own User-Agent so the server can
tell them apart. One node's whole process tree is stopped mid-crawl, with Jobs queued in its
workers; the others take its hosts over once its leases expired plus the grace, and finish
them. Then it resumes. The Jobs that waited in its workers carry their lease deadline
(``Job.not_after``, crawler/worker/fence.py): the server must see no request from it to a
host it lost, its late results are refused, and the run's rows stay those of one clean crawl.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.distributed.mesh import Mesh, assert_stored_once, finish, kill_left, start_node, stored
from tests.kit.crawl import rows
from tests.kit.postgres import PostgresServer
from tests.kit.processes import child_pids
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]


def state_of(pid: int) -> str:
    """The process state letter from /proc (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def wait_until(
    what: str, check: Callable[[], bool], limit: float, state: Callable[[], object] = str
) -> None:
    """Wait for ``check``; on a timeout the message carries ``state()``, what was seen."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}: {state()}"
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_a_node_stopped_past_its_leases_sends_nothing_to_the_hosts_it_lost(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    # Slow pages: each node has more Jobs in flight than fetch threads, so some wait in its
    # workers' queues when it is stopped (the case the worker-side fence is for).
    mesh = Mesh(site, delay=0.3)
    nodes = [
        start_node(tmp_path, db, mesh.start, "lease_ttl=2", f"user_agent=node-{i}")
        for i in range(3)
    ]
    victim = nodes[0]
    try:
        wait_until("40 pages are stored", lambda: stored(db) >= 40, 60)

        def victim_busy() -> bool:
            """The node to stop joined and has more Jobs in flight than its 2 workers have
            fetch threads (6 each), so some wait in a worker's queue (a slow start under
            load can leave it without hosts for a while)."""
            found = rows(
                db,
                "SELECT n.id, count(f.fp) FROM nodes n LEFT JOIN frontier f ON f.node = n.id"
                " AND f.state = 'in_flight' WHERE n.pid = ? GROUP BY n.id",
                victim.pid,
            )
            return bool(found) and found[0][1] > 12

        wait_until("the node to stop has work in flight", victim_busy, 60)
        ((victim_id,),) = rows(db, "SELECT id FROM nodes WHERE pid = ?", victim.pid)
        os.killpg(victim.pid, signal.SIGSTOP)  # the node's whole tree: parent and workers
        stopped_at = time.time()
        tree = [victim.pid, *child_pids(victim.pid)]
        assert len(tree) == 3, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in tree]
        wait_until("the tree is stopped", lambda: all(state_of(p) == "T" for p in tree), 5)
        lost = [h for (h,) in rows(db, "SELECT host FROM host_leases WHERE owner = ?", victim_id)]
        in_flight = rows(
            db, "SELECT count(*) FROM frontier WHERE node = ? AND state = 'in_flight'", victim_id
        )[0][0]
        assert lost and in_flight > 0, (lost, in_flight)

        # Taken over (lease_ttl + the grace, about 63 s) and finished by the others.
        def taken_over() -> bool:
            left = "SELECT count(*) FROM frontier WHERE host = ANY(?) AND state <> 'done'"
            held = "SELECT count(*) FROM host_leases WHERE owner = ?"
            return rows(db, left, lost) == [(0,)] and rows(db, held, victim_id) == [(0,)]

        def seen() -> object:
            return {
                "left": rows(
                    db,
                    "SELECT host, url, state, node FROM frontier WHERE host = ANY(?)"
                    " AND state <> 'done'",
                    lost,
                ),
                "leases": rows(
                    db, "SELECT host, owner, expires_at FROM host_leases WHERE host = ANY(?)", lost
                ),
                "nodes": rows(db, "SELECT id, pid, state, exit_code FROM nodes ORDER BY id"),
                "exited": [n.poll() for n in nodes],
                "waited": round(time.time() - stopped_at, 1),
            }

        wait_until("the others took its hosts over and crawled them", taken_over, 150, seen)
        assert all(state_of(p) == "T" for p in tree)  # still stopped all along
        resumed_at = time.time()
        os.killpg(victim.pid, signal.SIGCONT)
        results = finish(nodes, 90)
    finally:
        kill_left(nodes)
    for code, err in results:
        assert code == 0, err
    late = [
        (host, path, round(at - resumed_at, 3))
        for host, path, headers, at in list(mesh.site.requests)
        if headers.get("user-agent") == "node-0" and host in lost and at >= resumed_at
    ]
    assert late == [], late
    # The fence fired: Jobs waiting in its workers were not sent after the resume.
    assert "requests not sent: their host's lease had passed" in results[0][1], results[0][1]
    # It did crawl before the stop, and the others fetched its hosts' pages after it.
    by_victim = [
        at for _h, _p, hd, at in list(mesh.site.requests) if hd.get("user-agent") == "node-0"
    ]
    assert by_victim and min(by_victim) < stopped_at
    assert_stored_once(db, mesh.total)
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    hits = mesh.page_hits()
    assert all(v <= 2 for v in hits.values()), hits.most_common(3)
    (code, reason), *more = rows(db, "SELECT exit_code, finish_reason FROM runs")
    assert more == [] and code == 0, reason
    states = rows(db, "SELECT state, exit_code FROM nodes ORDER BY id")
    assert states == [("done", 0)] * 3, states
    # Its refused results were not counted: the nodes' pages sum to the pages stored.
    assert rows(db, "SELECT sum(pages) FROM nodes") == [(mesh.total,)]
    assert json.loads(rows(db, "SELECT stats FROM runs")[0][0])["pages"] == mesh.total
