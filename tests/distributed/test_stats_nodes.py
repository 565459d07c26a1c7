"""``crawler runs`` / ``crawler stats`` on a run shared by nodes: who runs it, and how far.

A live multi-node run has no stats row yet (each node adds its counters when it leaves), so
``stats`` reads the ``nodes`` table: the pages and items so far as of the nodes' last
heartbeats, and one line per node (machine, pid, state, its pages, heartbeat age). The
state of the run comes from those heartbeats, not from one pid, which may live on another
machine.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from crawler.store.history import run_state
from tests.distributed.mesh import Mesh, assert_stored_once, finish, kill_left, start_node, stored
from tests.kit.crawl import rows
from tests.kit.postgres import PostgresServer
from tests.kit.project import invoke
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(150)
def test_stats_of_a_live_shared_run_lists_its_nodes_then_the_finished_run(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site, delay=0.05)
    nodes = [start_node(tmp_path, db, mesh.start) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while not (
            stored(db) >= 30
            and rows(db, "SELECT count(*) FROM nodes WHERE pages > 0 AND state = 'running'")
            == [(2,)]
        ):
            assert time.monotonic() < deadline, "two nodes never both stored pages"
            time.sleep(0.1)
        live = invoke("stats", "--db", db)
        listed = invoke("runs", "--db", db)
        results = finish(nodes, 120)
    finally:
        kill_left(nodes)
    assert [code for code, _err in results] == [0, 0], results

    assert live.exit_code == 0, live.output
    head, *lines = live.output.splitlines()
    so_far = re.match(r"run 1 of mesh: running, (\d+) pages and (\d+) items so far", head)
    assert so_far, head
    assert int(so_far[1]) >= 1 and int(so_far[2]) == int(so_far[1])  # one item per page
    node_lines = [line for line in lines if line.startswith("node ")]
    assert len(node_lines) == 2, live.output
    pids = {int(m[1]) for line in node_lines if (m := re.search(r":(\d+)  running, ", line))}
    assert pids == {proc.pid for proc in nodes}, live.output
    assert all(re.search(r"heartbeat \d+\.\ds ago", line) for line in node_lines), live.output
    assert "(running)" in listed.output, listed.output

    assert_stored_once(db, mesh.total)
    done = invoke("stats", "--db", db)
    assert done.exit_code == 0, done.output
    assert done.output.startswith("run 1 of mesh: finished (exit 0)"), done.output
    assert f"pages       {mesh.total}" in done.output, done.output
    finished_nodes = [line for line in done.output.splitlines() if line.startswith("node ")]
    assert len(finished_nodes) == 2 and all("done (exit 0)" in n for n in finished_nodes)
    assert sum(int(re.search(r"(\d+) pages", n)[1]) for n in finished_nodes) == mesh.total  # type: ignore[index]


def test_run_state_of_shared_runs_follows_the_heartbeats() -> None:
    def run(*nodes: tuple[str, float]) -> dict[str, object]:
        return {
            "finished_at": None,
            "hostname": "elsewhere",
            "pid": 1,
            "nodes": [{"state": s, "heartbeat_at": at} for s, at in nodes],
        }

    now = 10_000.0
    assert run_state(run(("running", now - 1)), now) == "running"
    # One node gone silent, another alive: the run goes on.
    assert run_state(run(("running", now - 500), ("running", now - 2)), now) == "running"
    # Every node silent long past the takeover time, or left: nobody runs it any more.
    assert run_state(run(("running", now - 500)), now) == "killed"
    assert run_state(run(("done", now - 1), ("dead", now - 1)), now) == "killed"
    assert run_state({**run(("running", now)), "finished_at": now}, now) == "finished"
