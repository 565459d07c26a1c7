"""A node paused inside a transaction does not hold its rows locked for as long as it is paused.

A node's batch reads its hosts' leases ``FOR SHARE`` so that a takeover (``FOR UPDATE SKIP
LOCKED``) waits until the batch commits. A node stopped between two statements of that
transaction (SIGSTOP, a network cut) would hold those locks until it resumed, and no other
node could ever take its hosts over: the takeover skips locked leases. The store's connection
asks the server to end a transaction left idle longer than ``busy_timeout``
(``idle_in_transaction_session_timeout``, beside ``lock_timeout``), so the locks go with it.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from crawler.store import open_store
from tests.kit.postgres import PostgresServer


@pytest.mark.timeout(60)
def test_a_transaction_left_open_past_busy_timeout_is_ended_and_its_locks_freed(
    postgres: PostgresServer,
) -> None:
    db = postgres.database()
    store = open_store(db, fresh=True, busy_timeout=1.0, db_retry=10.0)
    try:
        store.conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO host_leases (run_id, host, owner) VALUES (1, 'a.example', 7)"
        )
        with psycopg.connect(db, autocommit=True) as other:
            held = store.conn.transaction()  # type: ignore[attr-defined]
            held.__enter__()
            store.conn.execute(  # type: ignore[attr-defined]
                "SELECT owner FROM host_leases WHERE host = 'a.example' FOR SHARE"
            )
            takeover = "SELECT host FROM host_leases WHERE owner = 7 FOR UPDATE SKIP LOCKED"
            assert other.execute(takeover).fetchall() == []  # locked while the batch is open
            deadline = time.monotonic() + 10
            while not other.execute(takeover).fetchall():
                assert time.monotonic() < deadline, "the idle transaction kept its locks"
                time.sleep(0.1)
            # The server ended the paused side's session: its next statement fails, and the
            # store's next call connects again (a resumed node goes on, fenced by epoch).
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                store.conn.execute("SELECT 1")  # type: ignore[attr-defined]
            assert store.conn.broken  # type: ignore[attr-defined]
        held.__exit__(None, None, None)
        assert store.has_queued() is False
        assert store.reconnect_count() == 1  # type: ignore[attr-defined]
    finally:
        store.conn.close()  # type: ignore[attr-defined]
