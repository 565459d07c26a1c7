"""A take whose answer the connection lost: the rows are the node's, the node never knew.

``take`` is one ``UPDATE ... RETURNING`` in its own transaction. If the server commits it
and the connection breaks before the answer arrives (``pg_ctl restart -m immediate`` at that
moment, a network cut), the store reconnects and repeats the call, which takes other rows:
the first ones stay in flight under a node that heartbeats, so no takeover would ever free
them, and every node would wait for them forever. After a reconnect the node puts back its
in-flight rows the engine does not know of (``requeue_lost_takes``).

The test makes that state for real: it marks queued rows in flight under the running node,
as the lost take would have, then ends the node's connection on the server.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.distributed.mesh import Mesh, assert_stored_once, finish, kill_left, start_node, stored
from tests.kit.crawl import rows
from tests.kit.postgres import PostgresServer
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(120)
def test_rows_of_a_take_lost_with_the_connection_are_requeued_and_crawled(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site, delay=0.2)
    node = start_node(tmp_path, db, mesh.start, "db_retry=30")
    try:
        deadline = time.monotonic() + 60
        while stored(db) < 20 or not rows(
            db, "SELECT 1 FROM frontier WHERE state = 'queued' LIMIT 1"
        ):
            assert time.monotonic() < deadline, "the crawl never got going"
            assert node.poll() is None, node.communicate()[1]
            time.sleep(0.05)
        with psycopg.connect(db, autocommit=True) as conn:
            ((node_id,),) = rows(db, "SELECT id FROM nodes WHERE pid = ?", node.pid)
            lost = [
                fp
                for (fp,) in conn.execute(
                    "UPDATE frontier SET state = 'in_flight', node = %s, epoch = 1"
                    " WHERE fp IN (SELECT fp FROM frontier WHERE state = 'queued' LIMIT 3)"
                    " RETURNING fp",
                    (node_id,),
                )
            ]
            assert lost
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"crawler pid {node.pid}",),
            ).fetchone()
            assert ended == (1,)
        ((code, err),) = finish([node], 90)
    finally:
        kill_left([node])
    assert code == 0, err
    assert "reconnecting" in err, err
    assert f"after reconnecting: {len(lost)} URLs taken but never handed out, requeued" in err, err
    assert_stored_once(db, mesh.total)
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
