"""The database crashes under several nodes: ``pg_ctl restart -m immediate`` mid-crawl.

Three nodes crawl the ``Mesh`` site (tests/distributed/mesh.py). Every connection is cut at
once and the server runs crash recovery. With ``db_retry`` long enough the nodes reconnect,
keep their leases (a renewal checks owner and epoch, not expiry) and finish the one run; with
``db_retry=0`` each node exits 3 and a node started afterwards resumes the crawl and finishes
it. Either way nothing acknowledged is lost and nothing is stored twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.distributed.mesh import Mesh, assert_stored_once, finish, kill_left, start_node, stored
from tests.kit.crawl import rows
from tests.kit.postgres import PostgresServer
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]


def wait_for_crawl(db: str, nodes: int, pages: int, limit: float = 60) -> None:
    """Until ``nodes`` nodes joined the run and ``pages`` pages are stored."""
    deadline = time.monotonic() + limit
    while True:
        try:
            joined = int(rows(db, "SELECT count(*) FROM nodes")[0][0])
        except Exception:  # the schema is not there yet
            joined = 0
        if joined >= nodes and stored(db) >= pages:
            return
        assert time.monotonic() < deadline, f"{joined} nodes, {stored(db)} pages"
        time.sleep(0.05)


@pytest.mark.timeout(180)
def test_pg_ctl_restart_mid_crawl_three_nodes_reconnect_and_finish_one_run(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site, delay=0.1)
    nodes = [start_node(tmp_path, db, mesh.start, "lease_ttl=3", "db_retry=60") for _ in range(3)]
    try:
        wait_for_crawl(db, 3, mesh.total // 4)
        postgres.restart()
        restarted_with = stored(db)
        results = finish(nodes, 150)
    finally:
        kill_left(nodes)
    assert restarted_with < mesh.total  # the restart hit the crawl, not its end
    for code, err in results:
        assert code == 0, err
    assert any("reconnecting" in err for _code, err in results)
    assert_stored_once(db, mesh.total)
    assert rows(db, "SELECT count(*), min(exit_code), max(exit_code) FROM runs") == [(1, 0, 0)]
    per_node = rows(db, "SELECT state, exit_code FROM nodes")
    assert per_node == [("done", 0)] * 3, per_node


@pytest.mark.timeout(180)
def test_pg_ctl_restart_with_db_retry_0_every_node_exits_3_and_a_new_node_finishes(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site, delay=0.1)
    nodes = [start_node(tmp_path, db, mesh.start, "lease_ttl=3", "db_retry=0") for _ in range(2)]
    try:
        wait_for_crawl(db, 2, mesh.total // 4)
        postgres.restart()
        results = finish(nodes, 60)
    finally:
        kill_left(nodes)
    for code, err in results:
        assert code == 3, err
        assert "postgresql://crawler@" in err  # names the database it lost
    left = stored(db)
    assert left < mesh.total
    # cron's next start: the dead nodes' in-flight rows go back to the queue, nothing lost.
    ((code, err),) = finish([start_node(tmp_path, db, mesh.start, "lease_ttl=3")], 120)
    assert code == 0, err
    assert_stored_once(db, mesh.total)
    hits = mesh.page_hits()
    assert all(v <= 2 for v in hits.values()), hits.most_common(3)
    runs = rows(db, "SELECT exit_code FROM runs ORDER BY id")
    assert runs[-1] == (0,), runs
