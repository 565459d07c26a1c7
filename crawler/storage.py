"""``Store``: the crawl's SQLite file, and the only code that writes it.

How this works: the parent process owns one connection (WAL, ``synchronous=NORMAL``) and
writes in explicit ``BEGIN IMMEDIATE`` transactions: one per ``add``/``take``/``requeue``
call and one per ``record`` batch, so a kill -9 at any moment loses at most the batch being
written. Everything ``record`` writes is idempotent by key (pages upsert by ``url``, a page's
items are replaced by ``page_url``, links are unique pairs), so a batch re-fetched after a
crash is never stored twice.

The ``frontier`` table is the crawl's memory: one row per request fingerprint (``fp``, the
primary key, so ``INSERT OR IGNORE`` is the deduplication and no Python set of URLs exists).
``state`` is short text: ``queued``, ``in_flight``, ``done`` or ``failed``. ``seq`` records
insertion order. Two partial indexes keep the scheduling queries independent of how many rows
are done: ``frontier_queue (host, priority DESC, seq, not_before) WHERE state = 'queued'``
serves ``take`` and ``hosts_with_work``; ``frontier_delayed (not_before)`` covers the few
queued rows waiting for a retry time. Progress counts are kept in memory from what each call
changed (one full count at open).

Every table is a plain table with JSON stored as text, so the file opens directly in the
``sqlite-utils`` CLI and Datasette.

Exceptions::

    StorageError            a database that cannot be opened, is not SQLite, stays locked
                            by another writer past ``busy_timeout``, or fails mid-write

One run per database at a time is not this module's business: the engine holds
:class:`crawler.runlock.RunLock` (an ``flock`` on ``<db>.lock``) around the whole run.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from crawler.messages import Follow, Job, NewRequest, Outcome


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


sqlite_utils = _import_sqlite_utils()

__all__ = ["BatchStats", "StorageError", "Store"]

SCHEMA_VERSION = 2  # 2: the robots table
STATES = ("queued", "in_flight", "done", "failed")

_TABLES: dict[str, str] = {
    "frontier": """
        fp INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        host TEXT NOT NULL,
        method TEXT NOT NULL DEFAULT 'GET',
        headers TEXT,
        body BLOB,
        callback TEXT,
        meta TEXT,
        depth INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        redirect_urls TEXT,
        discovered_at REAL,
        updated_at REAL,
        etag TEXT,
        last_modified TEXT,
        content_hash TEXT,
        fetched_at REAL,
        next_due REAL""",
    "pages": """
        url TEXT PRIMARY KEY NOT NULL,
        status INTEGER,
        headers TEXT,
        content_type TEXT,
        size INTEGER,
        body BLOB,
        content_hash TEXT,
        etag TEXT,
        last_modified TEXT,
        location TEXT,
        depth INTEGER,
        fetched_at REAL,
        elapsed_ms REAL,
        run_id INTEGER""",
    "items": """
        page_url TEXT NOT NULL,
        run_id INTEGER""",
    "links": """
        from_url TEXT NOT NULL,
        to_url TEXT NOT NULL,
        UNIQUE (from_url, to_url)""",
    "errors": """
        id INTEGER PRIMARY KEY,
        url TEXT,
        kind TEXT,
        message TEXT,
        traceback TEXT,
        run_id INTEGER,
        at REAL""",
    "runs": """
        id INTEGER PRIMARY KEY,
        spider TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        exit_code INTEGER,
        finish_reason TEXT,
        stats TEXT,
        settings TEXT,
        pid INTEGER,
        hostname TEXT""",
    # One robots.txt policy per host key, so a run within its expiry does not fetch it again.
    "robots": """
        host TEXT PRIMARY KEY NOT NULL,
        kind TEXT,
        status INTEGER,
        text TEXT,
        fetched_at REAL,
        expires_at REAL,
        retry_at REAL,
        user_agent TEXT""",
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS frontier_queue ON frontier (host, priority DESC, seq, not_before)"
    " WHERE state = 'queued'",
    "CREATE INDEX IF NOT EXISTS frontier_delayed ON frontier (not_before)"
    " WHERE state = 'queued' AND not_before > 0",
    "CREATE INDEX IF NOT EXISTS frontier_in_flight ON frontier (fp) WHERE state = 'in_flight'",
    "CREATE INDEX IF NOT EXISTS items_page_url ON items (page_url)",
    "CREATE INDEX IF NOT EXISTS errors_url ON errors (url)",
    "CREATE INDEX IF NOT EXISTS runs_spider ON runs (spider, id)",
)
# Item keys that would clash with our own columns get this prefix.
_RESERVED_ITEM_COLUMNS = {"page_url", "run_id", "rowid", "oid", "_rowid_"}

_ADD_FOLLOW = (
    "INSERT OR IGNORE INTO frontier (fp, url, host, depth, seq, discovered_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ADD_REQUEST = (
    "INSERT OR IGNORE INTO frontier (fp, url, host, method, headers, body, callback, meta,"
    " depth, priority, seq, redirect_urls, discovered_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TAKE = (
    "SELECT fp, url, method, headers, body, callback, meta, depth, attempts, redirect_urls,"
    " etag, last_modified, content_hash FROM frontier"
    " WHERE state = 'queued' AND host = ? AND not_before <= ?"
    " ORDER BY priority DESC, seq LIMIT ?"
)
# Distinct queued hosts by skipping through the partial index: one seek per host, so the
# cost follows the number of hosts, not the number of queued rows.
_QUEUED_HOSTS = """
WITH RECURSIVE h(host) AS (
    SELECT (SELECT min(host) FROM frontier WHERE state = 'queued')
    UNION ALL
    SELECT (SELECT min(host) FROM frontier WHERE state = 'queued' AND host > h.host)
    FROM h WHERE h.host IS NOT NULL
)
SELECT host FROM h WHERE host IS NOT NULL AND EXISTS (
    SELECT 1 FROM frontier WHERE state = 'queued' AND host = h.host AND not_before <= ?
)
"""
_UPSERT_PAGE = (
    "INSERT INTO pages (url, status, headers, content_type, size, body, content_hash, etag,"
    " last_modified, location, depth, fetched_at, elapsed_ms, run_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (url) DO UPDATE SET status = excluded.status, headers = excluded.headers,"
    " content_type = excluded.content_type, size = excluded.size, body = excluded.body,"
    " content_hash = excluded.content_hash, etag = excluded.etag,"
    " last_modified = excluded.last_modified, location = excluded.location,"
    " depth = excluded.depth, fetched_at = excluded.fetched_at,"
    " elapsed_ms = excluded.elapsed_ms, run_id = excluded.run_id"
)
# A 304 (or a 2xx with the stored body hash) confirms the stored page: it keeps its data,
# only the fetch time moves.
_TOUCH_PAGE = (
    "UPDATE pages SET fetched_at = ?, elapsed_ms = ?, run_id = ?,"
    " etag = coalesce(?, etag), last_modified = coalesce(?, last_modified) WHERE url = ?"
)


class StorageError(Exception):
    """The crawl database cannot be opened or written (the message says why)."""


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one ``record`` call wrote."""

    pages: int = 0
    items: int = 0
    errors: int = 0
    links: int = 0
    new_requests: int = 0  # frontier rows added from requests and follows
    done: int = 0
    failed: int = 0
    retried: int = 0
    bytes: int = 0


def _json(value: Any) -> str | None:
    if value is None or value == () or value == {}:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _item_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bytes):
        return int(value) if isinstance(value, bool) else value
    return json.dumps(value, ensure_ascii=False, default=str)


def _sql_type(value: Any) -> str:
    if isinstance(value, bool | int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, bytes):
        return "BLOB"
    return "TEXT"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    """The crawl database at ``path``. Not thread-safe: one owner calls it."""

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
            self._open(fresh)
        except BaseException:
            self.conn.close()
            raise
        self.db = sqlite_utils.Database(self.conn)

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
        self._item_columns = self._columns("items")
        self._load()

    def _create(self, fresh: bool) -> None:
        with self._tx("create the schema in"):
            self._migrate()
            if fresh:
                for table in ("frontier", "pages", "links", "errors", "robots"):
                    self.conn.execute(f"DELETE FROM {table}")
                # Items get their columns from the data: start from the bare table again.
                self.conn.execute("DROP TABLE items")
                self._migrate()

    def _load(self) -> None:
        self._seq = itertools.count(
            (self.conn.execute("SELECT max(seq) FROM frontier").fetchone()[0] or 0) + 1
        )
        self._counts = dict.fromkeys(STATES, 0)
        self.recount()

    def _migrate(self) -> None:
        """Create what is missing; add columns a newer version declares (never drop)."""
        for table, body in _TABLES.items():
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            have = self._columns(table)
            for line in body.split(",\n"):
                words = line.split()
                if words and words[0] not in ("UNIQUE", "PRIMARY") and words[0] not in have:
                    decl = " ".join(words)
                    if "PRIMARY KEY" not in decl and "NOT NULL" not in decl:
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {decl}")
        for sql in _INDEXES:
            self.conn.execute(sql)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _columns(self, table: str) -> dict[str, str]:
        """Column names of ``table``, keyed by their lower-case form (SQLite ignores case)."""
        rows = self.conn.execute(f"PRAGMA table_info({table})").fetchall()
        return {row[1].lower(): row[1] for row in rows}

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

    def __enter__(self) -> Store:
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

    # --- frontier -------------------------------------------------------------------------

    def add(self, requests: Iterable[NewRequest]) -> int:
        """Queue requests not seen before (by ``fp``); the number of new rows.

        A request with a ``lastmod`` also queues again a done entry fetched before it.
        """
        now = self._clock()
        seq = self._seq
        requests = list(requests)
        rows = (
            (
                r.fp,
                r.url,
                r.host,
                r.method,
                _json([list(h) for h in r.headers]),
                r.body,
                r.callback,
                _json(r.meta),
                r.depth,
                r.priority,
                next(seq),
                _json(list(r.redirect_urls)),
                now,
                now,
            )
            for r in requests
        )
        with self._tx("add requests to") as conn:
            before = conn.total_changes
            conn.executemany(_ADD_REQUEST, rows)
            new = conn.total_changes - before
            stale = [(now, r.fp, r.lastmod) for r in requests if r.lastmod is not None]
            if stale:
                # Recrawl rule 3: a sitemap says the page changed after we last fetched it.
                # Its validators stay, so the fetch is still conditional.
                before = conn.total_changes
                conn.executemany(
                    "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                    " updated_at = ? WHERE fp = ? AND state = 'done' AND fetched_at < ?",
                    stale,
                )
                requeued = conn.total_changes - before
                self._counts["done"] -= requeued
                self._counts["queued"] += requeued
        self._counts["queued"] += new
        return new

    def add_follows(self, follows: Iterable[Follow], *, depth: int) -> int:
        """Queue ``(fp, url, host)`` links (default callback and priority) at ``depth``."""
        now = self._clock()
        seq = self._seq
        rows = ((fp, url, host, depth, next(seq), now, now) for fp, url, host in follows)
        with self._tx("add links to") as conn:
            before = conn.total_changes
            conn.executemany(_ADD_FOLLOW, rows)
            new = conn.total_changes - before
        self._counts["queued"] += new
        return new

    def hosts_with_work(self, now: float) -> list[str]:
        """Hosts with a queued entry whose ``not_before`` has passed."""
        return [row[0] for row in self.conn.execute(_QUEUED_HOSTS, (now,))]

    def next_not_before(self, now: float | None = None) -> float | None:
        """The earliest ``not_before`` after ``now`` among queued entries (None: none waits)."""
        at = self._clock() if now is None else now
        row = self.conn.execute(
            "SELECT min(not_before) FROM frontier"
            " WHERE state = 'queued' AND not_before > 0 AND not_before > ?",
            (at,),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def queued_url(self, host: str) -> str | None:
        """Any queued URL of ``host`` (the engine needs its scheme to ask for robots.txt)."""
        row = self.conn.execute(
            "SELECT url FROM frontier WHERE state = 'queued' AND host = ? LIMIT 1", (host,)
        ).fetchone()
        return None if row is None else str(row[0])

    def has_queued(self) -> bool:
        row = self.conn.execute("SELECT 1 FROM frontier WHERE state = 'queued' LIMIT 1")
        return row.fetchone() is not None

    def take(self, host: str, limit: int, now: float) -> list[Job]:
        """Up to ``limit`` ready entries of ``host`` (priority, then age), now in flight."""
        if limit <= 0:
            return []
        with self._tx("take work from") as conn:
            rows = conn.execute(_TAKE, (host, now, limit)).fetchall()
            conn.executemany(
                "UPDATE frontier SET state = 'in_flight', updated_at = ? WHERE fp = ?",
                [(now, row[0]) for row in rows],
            )
        self._counts["queued"] -= len(rows)
        self._counts["in_flight"] += len(rows)
        return [
            Job(
                fp=fp,
                url=url,
                host=host,
                method=method,
                headers=tuple((k, v) for k, v in json.loads(headers)) if headers else (),
                body=body,
                callback=callback,
                meta=json.loads(meta) if meta else None,
                depth=depth,
                attempt=attempts,
                redirect_urls=tuple(json.loads(redirects)) if redirects else (),
                etag=etag,
                last_modified=last_modified,
                content_hash=content_hash,
            )
            for (
                fp,
                url,
                method,
                headers,
                body,
                callback,
                meta,
                depth,
                attempts,
                redirects,
                etag,
                last_modified,
                content_hash,
            ) in rows
        ]

    def reset_in_flight(self) -> int:
        """Every in-flight entry back to queued (a run starting after a crash)."""
        with self._tx("reset") as conn:
            n = conn.execute(
                "UPDATE frontier SET state = 'queued' WHERE state = 'in_flight'"
            ).rowcount
        self._counts["in_flight"] -= n
        self._counts["queued"] += n
        return n

    def requeue(self, fps: Iterable[int], *, count_attempt: bool = False) -> int:
        """These in-flight entries back to queued (shutdown, a dead worker).

        With ``count_attempt`` (the worker fetching them died) each counts one more fetch
        attempt, so a URL that kills its worker every time runs out of attempts
        (:meth:`give_up`) instead of looping forever.
        """
        sql = "UPDATE frontier SET state = 'queued' WHERE fp = ? AND state = 'in_flight'"
        if count_attempt:
            sql = sql.replace("'queued'", "'queued', attempts = attempts + 1", 1)
        with self._tx("requeue in") as conn:
            before = conn.total_changes
            conn.executemany(sql, ((fp,) for fp in fps))
            n = conn.total_changes - before
        self._counts["in_flight"] -= n
        self._counts["queued"] += n
        return n

    def give_up(
        self,
        fps: Iterable[int],
        *,
        max_attempts: int,
        kind: str,
        message: str,
        run_id: int | None,
    ) -> list[str]:
        """Queued entries among ``fps`` with ``max_attempts`` or more attempts become failed,
        each with an ``errors`` row; returns their URLs."""
        now = self._clock()
        failed: list[str] = []
        with self._tx("give up on entries in") as conn:
            for fp in fps:
                row = conn.execute(
                    "SELECT url FROM frontier WHERE fp = ? AND state = 'queued' AND attempts >= ?",
                    (fp, max_attempts),
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "UPDATE frontier SET state = 'failed', updated_at = ? WHERE fp = ?", (now, fp)
                )
                conn.execute(
                    "INSERT INTO errors (url, kind, message, traceback, run_id, at)"
                    " VALUES (?, ?, ?, '', ?, ?)",
                    (row[0], kind, message, run_id, now),
                )
                failed.append(row[0])
        self._counts["queued"] -= len(failed)
        self._counts["failed"] += len(failed)
        return failed

    def counts(self) -> dict[str, int]:
        """Frontier entries by state (kept in memory; ``recount`` re-reads them)."""
        return dict(self._counts)

    def recount(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, n in self.conn.execute("SELECT state, count(*) FROM frontier GROUP BY state"):
            counts[state] = n
        self._counts = counts
        return dict(counts)

    # --- results --------------------------------------------------------------------------

    def record(
        self,
        outcomes: Sequence[Outcome],
        *,
        run_id: int | None,
        store_body: bool = True,
        store_links: bool = False,
        recrawl_after: float | None = None,
    ) -> BatchStats:
        """Write a batch of outcomes in one transaction: all of it or nothing.

        For each outcome: its page (upsert by url; a 304 only refreshes the stored row), its
        items (replacing the page's earlier items, unless the page was unchanged: a 304 or
        ``stats["unchanged"]``), links, errors, the frontier entry's new state (``retry``
        means queued again with ``not_before = retry_at``), then its ``requests`` and its
        ``follows`` (one level deeper than the job).
        """
        now = self._clock()
        pages = items = errors = links = new = done = failed = retried = size = 0
        counts = self._counts
        delta = dict.fromkeys(STATES, 0)
        with self._tx("record results in") as conn:
            before_new = 0
            for o in outcomes:
                row = conn.execute(
                    "SELECT state, depth FROM frontier WHERE fp = ?", (o.fp,)
                ).fetchone()
                depth = row[1] if row else (o.page.depth if o.page else 0)
                page = o.page
                unchanged = bool(o.stats.get("unchanged"))
                if page is not None:
                    pages += 1
                    size += page.size
                    touched = 0
                    if page.status == 304:
                        unchanged = True
                    if unchanged:
                        touched = conn.execute(
                            _TOUCH_PAGE,
                            (
                                page.fetched_at,
                                page.elapsed_ms,
                                run_id,
                                page.etag,
                                page.last_modified,
                                page.url,
                            ),
                        ).rowcount
                    if not touched:
                        conn.execute(
                            _UPSERT_PAGE,
                            (
                                page.url,
                                page.status,
                                page.headers,
                                page.content_type,
                                page.size,
                                page.body if store_body else None,
                                page.content_hash,
                                page.etag,
                                page.last_modified,
                                page.location,
                                page.depth,
                                page.fetched_at,
                                page.elapsed_ms,
                                run_id,
                            ),
                        )
                page_url = page.url if page is not None else o.url
                if not unchanged and (page is not None or o.items):
                    conn.execute("DELETE FROM items WHERE page_url = ?", (page_url,))
                    items += self._insert_items(page_url, run_id, o.items)
                if store_links and o.links:
                    b = conn.total_changes
                    conn.executemany(
                        "INSERT OR IGNORE INTO links (from_url, to_url) VALUES (?, ?)",
                        ((page_url, to) for to in o.links),
                    )
                    links += conn.total_changes - b
                if o.failures:
                    conn.executemany(
                        "INSERT INTO errors (url, kind, message, traceback, run_id, at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        ((f.url, f.kind, f.message, f.traceback, run_id, now) for f in o.failures),
                    )
                    errors += len(o.failures)
                if row is not None:
                    delta[row[0]] -= 1
                new_state = "queued" if o.state == "retry" else o.state
                delta[new_state] += 1
                if o.state == "done":
                    done += 1
                    fetched = page.fetched_at if page is not None else now
                    conn.execute(
                        "UPDATE frontier SET state = 'done', attempts = attempts + 1,"
                        " updated_at = ?, not_before = 0, fetched_at = ?, next_due = ?,"
                        " etag = CASE WHEN ? THEN coalesce(?, etag) ELSE ? END,"
                        " last_modified = CASE WHEN ? THEN coalesce(?, last_modified) ELSE ? END,"
                        " content_hash = coalesce(?, content_hash) WHERE fp = ?",
                        (
                            now,
                            fetched,
                            None if recrawl_after is None else fetched + recrawl_after,
                            unchanged,
                            page.etag if page else None,
                            page.etag if page else None,
                            unchanged,
                            page.last_modified if page else None,
                            page.last_modified if page else None,
                            page.content_hash if page else None,
                            o.fp,
                        ),
                    )
                elif o.state == "failed":
                    failed += 1
                    conn.execute(
                        "UPDATE frontier SET state = 'failed', attempts = attempts + 1,"
                        " updated_at = ? WHERE fp = ?",
                        (now, o.fp),
                    )
                else:
                    retried += 1
                    conn.execute(
                        "UPDATE frontier SET state = 'queued', attempts = attempts + 1,"
                        " updated_at = ?, not_before = ? WHERE fp = ?",
                        (now, o.retry_at or 0.0, o.fp),
                    )
                if row is None:
                    delta[new_state] -= 1  # an outcome for an unknown entry changes nothing
                if o.requests:
                    before_new += self._add_requests_in_tx(o.requests)
                if o.follows:
                    before_new += self._add_follows_in_tx(o.follows, depth + 1, now)
            new = before_new
        for state, d in delta.items():
            counts[state] += d
        counts["queued"] += new
        return BatchStats(
            pages=pages,
            items=items,
            errors=errors,
            links=links,
            new_requests=new,
            done=done,
            failed=failed,
            retried=retried,
            bytes=size,
        )

    def _add_requests_in_tx(self, requests: Iterable[NewRequest]) -> int:
        # add() joins the open transaction; undo its counter change, record() counts once.
        n = self.add(requests)
        self._counts["queued"] -= n
        return n

    def _add_follows_in_tx(self, follows: Iterable[Follow], depth: int, now: float) -> int:
        seq = self._seq
        before = self.conn.total_changes
        self.conn.executemany(
            _ADD_FOLLOW, ((fp, url, host, depth, next(seq), now, now) for fp, url, host in follows)
        )
        return self.conn.total_changes - before

    def _insert_items(
        self, page_url: str, run_id: int | None, items: Iterable[dict[str, Any]]
    ) -> int:
        n = 0
        known = self._item_columns
        for item in items:
            names = ["page_url", "run_id"]
            values: list[Any] = [page_url, run_id]
            for key, value in item.items():
                name = str(key) or "_"
                if name.lower() in _RESERVED_ITEM_COLUMNS:
                    name = "_" + name
                column = known.get(name.lower())
                if column is None:
                    self.conn.execute(
                        f"ALTER TABLE items ADD COLUMN {_quote(name)} {_sql_type(value)}"
                    )
                    column = known[name.lower()] = name
                if column in names:
                    values[names.index(column)] = _item_value(value)
                    continue
                names.append(column)
                values.append(_item_value(value))
            self.conn.execute(
                f"INSERT INTO items ({', '.join(map(_quote, names))})"
                f" VALUES ({', '.join('?' * len(names))})",
                values,
            )
            n += 1
        return n

    # --- recrawl --------------------------------------------------------------------------

    def schedule_recrawl(
        self,
        now: float,
        recrawl_after: float | None,
        start_fps: Iterable[int] = (),
        *,
        always_callbacks: Iterable[str] = (),
    ) -> int:
        """Queue again the start entries and done entries fetched before ``now - recrawl_after``.

        Entries whose callback is in ``always_callbacks`` (sitemaps) are queued again like
        start entries. Their validators (etag, last_modified) stay, so their ``Job`` asks
        conditionally. Returns how many entries were queued again.
        """
        with self._tx("schedule a recrawl in") as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                " updated_at = ? WHERE fp = ? AND state IN ('done', 'failed')",
                ((now, fp) for fp in start_fps),
            )
            conn.executemany(
                "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                " updated_at = ? WHERE callback = ? AND state IN ('done', 'failed')",
                ((now, name) for name in always_callbacks),
            )
            if recrawl_after is not None:
                conn.execute(
                    "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                    " updated_at = ? WHERE state = 'done' AND fetched_at < ?",
                    (now, now - recrawl_after),
                )
            n = conn.total_changes - before
        self.recount()
        return n

    # --- robots.txt -----------------------------------------------------------------------

    _ROBOTS_COLUMNS = (
        "kind",
        "status",
        "text",
        "fetched_at",
        "expires_at",
        "retry_at",
        "user_agent",
    )

    def put_robots(self, host: str, policy: dict[str, Any]) -> None:
        """Keep one host's robots.txt policy (the fields of ``RobotsPolicy``, as plain data)."""
        names = self._ROBOTS_COLUMNS
        with self._tx("store robots.txt in") as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO robots (host, {', '.join(names)})"
                f" VALUES (?, {', '.join('?' * len(names))})",
                (host, *(policy.get(name) for name in names)),
            )

    def robots_policies(self, since: float) -> list[tuple[str, dict[str, Any]]]:
        """``(host, fields)`` of every stored policy fetched at or after ``since``."""
        names = self._ROBOTS_COLUMNS
        rows = self.conn.execute(
            f"SELECT host, {', '.join(names)} FROM robots WHERE fetched_at >= ?", (since,)
        ).fetchall()
        return [(row[0], dict(zip(names, row[1:], strict=True))) for row in rows]

    # --- runs -----------------------------------------------------------------------------

    def begin_run(self, spider: str, settings: dict[str, Any] | None = None) -> int:
        """Insert a ``runs`` row (with our pid and host name) and return its id.

        A row whose ``finished_at`` stays NULL belongs to a run that was killed (or is still
        going: the caller holds the run lock while its row is open).
        """
        with self._tx("start a run in") as conn:
            cur = conn.execute(
                "INSERT INTO runs (spider, started_at, settings, pid, hostname)"
                " VALUES (?, ?, ?, ?, ?)",
                (spider, self._clock(), _json(settings), os.getpid(), socket.gethostname()),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def end_run(
        self,
        run_id: int,
        *,
        exit_code: int,
        finish_reason: str,
        stats: dict[str, Any] | None = None,
    ) -> None:
        with self._tx("finish a run in") as conn:
            conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, finish_reason = ?, stats = ?"
                " WHERE id = ?",
                (self._clock(), exit_code, finish_reason, _json(stats or {}) or "{}", run_id),
            )

    def runs(self, spider: str | None = None) -> list[dict[str, Any]]:
        """Runs, oldest first, with ``stats`` and ``settings`` decoded."""
        sql = "SELECT * FROM runs"
        params: tuple[Any, ...] = ()
        if spider is not None:
            sql += " WHERE spider = ?"
            params = (spider,)
        out = []
        for row in self.db.query(sql + " ORDER BY id", params):
            for key in ("stats", "settings"):
                if row.get(key):
                    row[key] = json.loads(row[key])
            out.append(row)
        return out

    def last_run(self, spider: str | None = None) -> dict[str, Any] | None:
        runs = self.runs(spider)
        return runs[-1] if runs else None

    def run_url_errors(self, run_id: int) -> tuple[int, int]:
        """``(urls that ended with an error, urls handled)`` in run ``run_id``.

        A URL is handled when the run stored its page or recorded an error for it; for the
        ``max_error_rate`` check at the end of a run (one scan of ``pages``). A URL that
        robots.txt disallows (an ``errors`` row of kind ``robots``) is neither.
        """
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(bad), 0) FROM (SELECT url, max(bad) AS bad FROM ("
            " SELECT url, 0 AS bad FROM pages WHERE run_id = ?"
            " UNION ALL SELECT url, 1 FROM errors WHERE run_id = ? AND kind <> 'robots')"
            " GROUP BY url)",
            (run_id, run_id),
        ).fetchone()
        return int(row[1]), int(row[0])
