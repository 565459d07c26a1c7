"""The one connection every part of ``Store`` shares: opening, WAL, busy waits, transactions.

How this works: the parent process owns one connection (WAL, ``synchronous=NORMAL``) and
writes in explicit ``BEGIN IMMEDIATE`` transactions through ``_tx``; nested calls join the
outer transaction, so ``record`` can queue follows inside its own batch. A database that is
up to date opens without taking the write lock, so a reader never waits behind a crawl.
SQLite errors are translated here, once, into a ``StorageError`` that says what we were
doing and to which file.

The frontier's progress counts live here too, because every part changes them: they are kept
in memory from what each call changed (one full count at open, ``recount`` to re-read).

Raises :class:`~crawler.errors.StorageError`: a database that cannot be opened, is not SQLite,
stays locked by another writer past ``busy_timeout``, or fails mid-write.
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from crawler.errors import StorageError
from crawler.store.schema import SCHEMA_VERSION, STATES, create, item_columns

if TYPE_CHECKING:
    from sqlite_utils import Database


def _import_sqlite_utils() -> Any:
    """Import sqlite-utils without letting it pull in numpy.

    sqlite-utils imports numpy when it is installed, only to map numpy scalar types to
    column types. Rows written here are plain Python values (they crossed a process boundary
    as plain data), and numpy would cost about 12 MB of resident memory in the long-lived
    parent, which the crawl's memory budget feels. Code that imports numpy later still gets it.
    """
    if "sqlite_utils" in sys.modules or "numpy" in sys.modules:
        import sqlite_utils
    else:
        sys.modules["numpy"] = None  # type: ignore[assignment]
        try:
            import sqlite_utils
        finally:
            del sys.modules["numpy"]
    return sqlite_utils


def database(conn: sqlite3.Connection) -> Database:
    """sqlite-utils over ``conn``, imported on first use: ``import crawler.store`` stays cheap,
    so the engine can import it before forking workers that never open a database."""
    db: Database = _import_sqlite_utils().Database(conn)
    return db


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``): it never creates the file or changes the schema,
    and in WAL mode it reads a consistent snapshot without waiting behind a writer."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


class Connection:
    """The database file at ``path`` and its one connection. Not thread-safe: one owner."""

    def __init__(
        self,
        path: str | Path,
        *,
        fresh: bool = False,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._in_tx = False
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the folder {str(self.path.parent)!r} for the database: "
                f"{exc.strerror or exc}"
            ) from exc
        if self.path.is_dir():
            raise StorageError(f"{str(self.path)!r} is a folder, not a database file")
        try:
            self.conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {str(self.path)!r}: {exc}") from exc
        try:
            self.db = database(self.conn)
            self._open(fresh)
        except BaseException:
            self.conn.close()
            raise

    # --- opening --------------------------------------------------------------------------

    def _open(self, fresh: bool) -> None:
        # Switching to WAL needs an exclusive lock and SQLite does not call the busy handler
        # for it, so wait here for another writer, like every other statement does.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise self._error(exc, "open") from exc
                time.sleep(0.02)
            except sqlite3.DatabaseError as exc:
                raise self._error(exc, "open") from exc
        if str(mode).lower() != "wal":
            raise StorageError(f"cannot switch {str(self.path)!r} to WAL mode (got {mode!r})")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION and not fresh:
            # Up to date: open without the write lock, so a reader (`crawler runs`) never
            # waits behind a running crawl.
            pass
        else:
            self._create(fresh)
        self._item_columns = item_columns(self.db)
        self._load()

    def _create(self, fresh: bool) -> None:
        with self._tx("create the schema in"):
            create(self.db, fresh=fresh)

    def _load(self) -> None:
        self._seq = itertools.count(
            (self.conn.execute("SELECT max(seq) FROM frontier").fetchone()[0] or 0) + 1
        )
        self._counts = dict.fromkeys(STATES, 0)
        self.recount()

    def _error(self, exc: sqlite3.Error, doing: str) -> StorageError:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return StorageError(f"{str(self.path)!r} is not a SQLite database (or is damaged)")
        if "locked" in text or "busy" in text:
            return StorageError(
                f"database {str(self.path)!r} is locked by another writer; waited"
                f" {self.busy_timeout:g}s to {doing} it"
            )
        return StorageError(f"cannot {doing} database {str(self.path)!r}: {text}")

    @contextmanager
    def _tx(self, doing: str = "write") -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; nested calls join the outer one."""
        if self._in_tx:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from exc
        self._in_tx = True
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, doing) from exc
            raise
        finally:
            self._in_tx = False

    def close(self) -> None:
        """Close the connection (again is fine). An open transaction is rolled back."""
        if self._closed:
            return
        self._closed = True
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
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
            f"<Store {str(self.path)!r} {c['queued']} queued {c['in_flight']} in flight"
            f" {c['done']} done {c['failed']} failed>"
        )

    # --- progress counts ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Frontier entries by state (kept in memory; ``recount`` re-reads them)."""
        return dict(self._counts)

    def recount(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, n in self.conn.execute("SELECT state, count(*) FROM frontier GROUP BY state"):
            counts[state] = n
        self._counts = counts
        return dict(counts)
