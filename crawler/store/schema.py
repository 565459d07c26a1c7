"""The schema: every table's DDL, the indexes, the version, and how a file is brought up to it.

Every table is a plain table with JSON stored as text (``to_json``), so the file opens directly
in the ``sqlite-utils`` CLI and Datasette. Migrations only add: ``migrate`` creates what is
missing and adds the columns a newer version declares, never dropping one, so an older
crawl file opens with its data. ``items`` is the exception to fixed columns: it starts bare
and grows a column per item key (see :mod:`crawler.store.results`).

These are functions over a connection, run by :class:`crawler.store.connection.Connection`
inside its write transaction; nothing here opens, locks or commits.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

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


def to_json(value: Any) -> str | None:
    if value is None or value == () or value == {}:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def columns(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """Column names of ``table``, keyed by their lower-case form (SQLite ignores case)."""
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return {row[1].lower(): row[1] for row in rows}


def migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing; add columns a newer version declares (never drop)."""
    for table, body in _TABLES.items():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        have = columns(conn, table)
        for line in body.split(",\n"):
            words = line.split()
            if words and words[0] not in ("UNIQUE", "PRIMARY") and words[0] not in have:
                decl = " ".join(words)
                if "PRIMARY KEY" not in decl and "NOT NULL" not in decl:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {decl}")
    for sql in _INDEXES:
        conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def create(conn: sqlite3.Connection, *, fresh: bool) -> None:
    """Bring the schema up to date; with ``fresh``, also empty the crawl (``runs`` stay)."""
    migrate(conn)
    if fresh:
        for table in ("frontier", "pages", "links", "errors", "robots"):
            conn.execute(f"DELETE FROM {table}")
        # Items get their columns from the data: start from the bare table again.
        conn.execute("DROP TABLE items")
        migrate(conn)
