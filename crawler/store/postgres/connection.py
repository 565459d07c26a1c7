"""The one PostgreSQL connection every part of the ``Store`` shares.

How this works: psycopg 3 in autocommit mode; each write is an explicit transaction through
``_tx`` (nested calls join the outer one), which is also where psycopg's errors become a
:class:`~crawler.errors.StorageError` that says what we were doing, naming the database
without its password (messages end up in logs). The frontier's progress counts are kept in
memory from what each call changed, as in SQLite (``recount`` re-reads them).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg

from crawler.errors import LockedError, StorageError
from crawler.store.postgres.schema import RUN_LOCK, create, item_columns
from crawler.store.schema import STATES

log = logging.getLogger(__name__)
T = TypeVar("T")


def without_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user@host/db``."""
    from crawler.store.api import _without_password

    return _without_password(url)


class Connection:
    """The database at ``url`` and its one connection. Not thread-safe: one owner."""

    # Set when this store joined a run as a node (cluster.py): take, requeue and record fence
    # their rows by node and lease epoch.
    node_id: int | None = None
    joined_run: int | None = None
    _deadlocked = False  # the last error was the server breaking a deadlock (see _retrying)
    reconnects = 0  # connections opened again after one was lost (_reconnect)

    def __init__(
        self,
        url: str,
        *,
        fresh: bool = False,
        busy_timeout: float = 30.0,
        db_retry: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.path = without_password(url)  # what a message or repr may name
        self.busy_timeout = busy_timeout
        self.db_retry = db_retry
        self._clock = clock
        self._closed = False
        self._run_locked = False
        self.conn = self._connect()
        try:
            with self._tx("create the schema in") as conn:
                create(conn, fresh=fresh)
            self._item_columns = item_columns(self.conn)
            self._counts = dict.fromkeys(STATES, 0)
            self.recount()
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        ms = int(self.busy_timeout * 1000)
        try:
            conn: psycopg.Connection[Any] = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.busy_timeout)),
                # Who holds the run lock, for the message a second run prints.
                application_name=f"crawler pid {os.getpid()}",
                # Wait for another writer's row locks at most busy_timeout, like SQLite's
                # busy wait; and a transaction of ours left open longer than that (a node
                # paused or cut off between two statements) is ended by the server, so its
                # row locks (a batch reads its leases FOR SHARE) do not hold the takeover of
                # its hosts off for as long as it stays paused: seen as a takeover that never
                # came in tests/distributed/test_pause.py under load.
                options=f"-c lock_timeout={ms} -c idle_in_transaction_session_timeout={ms}",
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot open database {self.path}: {first_line(exc)}") from None
        return conn

    def _reconnect(self, error: StorageError) -> None:
        """After a lost connection: connect again, with backoff, for at most ``db_retry``
        seconds (then ``error`` is raised), and take the run lock again if we held it.

        What the lost transaction wrote is either committed or not; the caller repeats the
        whole call, which is safe because every write is keyed (see ``crawler.store.api``)."""
        deadline = time.monotonic() + self.db_retry
        pause = 0.1
        while True:
            if time.monotonic() + pause > deadline:
                raise error
            log.warning("lost the database %s (%s); reconnecting", self.path, error)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            try:
                conn = self._connect()
            except StorageError:
                continue
            self.conn.close()
            self.conn = conn
            self.reconnects += 1
            if self._run_locked:
                self._run_locked = False
                self._take_run_lock()
            self.recount()
            return

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call()``, again after a reconnect when the connection broke under it, and again
        at once when the server chose it as a deadlock's victim (a few times)."""
        victims = 0
        while True:
            try:
                return call()
            except StorageError as exc:
                # The server rolled our transaction back to break a deadlock with another
                # node's: repeat the whole call (every write is keyed, repeating is safe).
                if self._deadlocked and victims < 5:
                    self._deadlocked = False
                    victims += 1
                    log.info("deadlock with another node; repeating the transaction")
                    continue
                if self._closed or not (self.conn.broken or self.conn.closed):
                    raise
                self._reconnect(exc)

    def _take_run_lock(self) -> None:
        """The database's run lock (a session advisory lock), or :class:`LockedError`."""
        with self._read("lock"):
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK,)).fetchone()
            if row is not None and row[0]:
                self._run_locked = True
                return
            holder = self.conn.execute(
                "SELECT a.application_name, extract(epoch FROM a.backend_start)"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s"
                " AND a.datname = current_database()",
                (RUN_LOCK & 0xFFFFFFFF,),
            ).fetchone()
        pid = since = None
        if holder is not None:
            name, started = holder
            if isinstance(name, str) and name.startswith("crawler pid "):
                pid = int(name.rsplit(" ", 1)[1])
            since = float(started) if started is not None else None
        self.close()  # a store that cannot own the run is of no use to its caller
        raise LockedError(self.path, pid, since)

    def _error(self, exc: psycopg.Error, doing: str) -> StorageError:
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return StorageError(
                f"database {self.path} is locked by another writer; waited"
                f" {self.busy_timeout:g}s to {doing} it"
            )
        self._deadlocked = isinstance(
            exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        )
        return StorageError(f"cannot {doing} database {self.path}: {first_line(exc)}")

    @contextmanager
    def _tx(self, doing: str = "write") -> Iterator[psycopg.Connection[Any]]:
        """One transaction; nested calls join the outer one."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            yield self.conn
            return
        try:
            with self.conn.transaction():
                yield self.conn
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None

    @contextmanager
    def _pipelined_tx(self, doing: str = "write") -> Iterator[psycopg.Connection[Any]]:
        """One transaction whose statements go out pipelined: none waits for the answer of
        the one before, so the whole transaction costs a round trip per result it reads
        (the first carries the BEGIN) and one for the COMMIT, instead of one per statement.
        A cursor's ``rowcount`` is known once the block has ended; an error surfaces there
        too (as a StorageError), the transaction rolled back."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            yield self.conn
            return
        try:
            with self.conn.pipeline(), self.conn.transaction():
                yield self.conn
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None

    @contextmanager
    def _read(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        try:
            yield self.conn
        except psycopg.Error as exc:
            raise self._error(exc, doing) from None

    # One statement: in autocommit mode it is a transaction by itself, one round trip where
    # ``_tx`` would add a BEGIN and a COMMIT.
    _statement = _read

    def close(self) -> None:
        """Close the connection (again is fine). An open transaction is rolled back."""
        if self._closed:
            return
        self._closed = True
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self._counts
        return (
            f"<Store {self.path} {c['queued']} queued {c['in_flight']} in flight"
            f" {c['done']} done {c['failed']} failed>"
        )

    def counts(self) -> dict[str, int]:
        """Frontier entries by state (kept in memory; ``recount`` re-reads them)."""
        return dict(self._counts)

    def recount(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        with self._read("count"):
            for state, n in self.conn.execute(
                "SELECT state, count(*) FROM frontier GROUP BY state"
            ):
                counts[state] = int(n)
        self._counts = counts
        return dict(counts)


def first_line(exc: BaseException) -> str:
    """The first line of a psycopg error (the rest is a LINE/caret context), password-free."""
    text = str(exc).strip().splitlines()
    return without_password(text[0]) if text else type(exc).__name__
