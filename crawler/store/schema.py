"""The schema: every table's columns, the indexes, the version, and how a file is brought up to it.

Every table is a plain table with JSON stored as text (``to_json``), so the file opens directly
in the ``sqlite-utils`` CLI and Datasette. Tables are declared as data (:class:`Table`) and
created by sqlite-utils, which writes the same ``CREATE TABLE`` we would by hand. Migrations
only add: ``migrate`` creates what is missing and adds the columns a newer version declares,
never dropping one, so an older crawl file opens with its data. ``items`` is the exception to
fixed columns: it starts bare and grows a column per item key (see :mod:`crawler.store.results`).

These are functions over a database, run by :class:`crawler.store.connection.Connection`
inside its write transaction (sqlite-utils nests its own as savepoints); nothing here opens,
locks or commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crawler.messages import Job

if TYPE_CHECKING:
    from sqlite_utils import Database

SCHEMA_VERSION = 6  # 2: robots; 3: item history; 4: host_state; 5: frontier keyed by an integer id;
# 6: deduplication by (url, fp), fingerprint lookups only for entries taken at least once
STATES = ("queued", "in_flight", "done", "failed")

# The fields of a robots.txt policy (crawler.robots.RobotsPolicy) kept per host: the robots
# table's columns after ``host``, and the keys of the rows the engine writes and reads back.
ROBOTS_FIELDS: dict[str, type] = {
    "kind": str,
    "status": int,
    "text": str,
    "fetched_at": float,
    "expires_at": float,
    "retry_at": float,
    "user_agent": str,
}
ROBOTS_COLUMNS = tuple(ROBOTS_FIELDS)

# The ``host_state`` columns after ``host`` (crawler.engine.throttle.ThrottleState.as_row).
HOST_STATE_FIELDS: dict[str, type] = {
    "concurrency": int,
    "baseline": float,
    "gap": float,
    "updated_at": float,
}
HOST_STATE_COLUMNS = tuple(HOST_STATE_FIELDS)


@dataclass(frozen=True, slots=True)
class Table:
    """One table as sqlite-utils creates it: columns in order, with their Python types."""

    columns: Mapping[str, type]
    pk: str | tuple[str, ...] | None = None
    not_null: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)


TABLES: dict[str, Table] = {
    "frontier": Table(
        {
            "id": int,
            "fp": int, "url": str, "host": str, "method": str, "headers": str, "body": bytes,
            "callback": str, "meta": str, "depth": int, "priority": int, "seq": int,
            "state": str, "attempts": int, "not_before": float, "redirect_urls": str,
            "discovered_at": float, "updated_at": float, "etag": str, "last_modified": str,
            "content_hash": str, "fetched_at": float, "next_due": float,
        },
        # An integer key that grows with each insert: a new row is appended to the table's
        # B-tree. Keyed by the random fp, every insert touched a random page of the whole
        # table, which outgrew the cache past a few million rows (and see frontier_key below).
        pk="id",
        not_null=frozenset(
            {"fp", "url", "host", "method", "depth", "priority", "seq", "state", "attempts",
             "not_before"}
        ),
        defaults={"method": "GET", "depth": 0, "priority": 0, "seq": 0, "state": "queued",
                  "attempts": 0, "not_before": 0},
    ),
    "pages": Table(
        {
            "url": str, "status": int, "headers": str, "content_type": str, "size": int,
            "body": bytes, "content_hash": str, "etag": str, "last_modified": str,
            "location": str, "depth": int, "fetched_at": float, "elapsed_ms": float,
            "run_id": int,
        },
        pk="url",
        not_null=frozenset({"url"}),
    ),
    "items": Table({"page_url": str, "run_id": int}, not_null=frozenset({"page_url"})),
    # A link is its pair: the primary key is the deduplication (INSERT OR IGNORE).
    "links": Table(
        {"from_url": str, "to_url": str},
        pk=("from_url", "to_url"),
        not_null=frozenset({"from_url", "to_url"}),
    ),
    "errors": Table(
        {"id": int, "url": str, "kind": str, "message": str, "traceback": str, "run_id": int,
         "at": float},
        pk="id",
    ),
    "runs": Table(
        {"id": int, "spider": str, "started_at": float, "finished_at": float, "exit_code": int,
         "finish_reason": str, "stats": str, "settings": str, "pid": int, "hostname": str},
        pk="id",
        not_null=frozenset({"spider", "started_at"}),
    ),
    # One robots.txt policy per host key, so a run within its expiry does not fetch it again.
    "robots": Table({"host": str, **ROBOTS_FIELDS}, pk="host", not_null=frozenset({"host"})),
    # Item history (a spider with item_key; crawler.store.items): the latest version of each
    # item by its key, the versions it replaced, and what each run changed.
    "tracked_items": Table(
        {"key": str, "page_url": str, "hash": str, "data": str, "first_seen_run": int,
         "last_seen_run": int, "last_changed_run": int, "removed_run": int},
        pk="key",
        not_null=frozenset({"key"}),
    ),
    "item_versions": Table(
        {"id": int, "key": str, "hash": str, "data": str, "first_seen_run": int,
         "replaced_run": int},
        pk="id",
    ),
    "item_changes": Table(
        {"id": int, "run_id": int, "key": str, "change": str, "page_url": str, "fields": str,
         "old": str, "new": str},
        pk="id",
    ),
    # What the adaptive controller (autothrottle) learned per host, for the next run to start
    # from; kept by ``fresh`` like ``runs``, since it describes the host, not the crawl.
    "host_state": Table(
        {"host": str, **HOST_STATE_FIELDS}, pk="host", not_null=frozenset({"host"})
    ),
    # The spider's cookie jars (crawler.cookies), restored by the next run. ``session`` is ""
    # for the default jar; ``attrs`` holds the other http.cookiejar fields (HttpOnly, ...).
    "cookies": Table(
        {"session": str, "domain": str, "path": str, "name": str, "value": str,
         "expires": float, "secure": int, "attrs": str},
        pk=("session", "domain", "path", "name"),
        not_null=frozenset({"session", "domain", "path", "name"}),
    ),
}  # fmt: skip

# The deduplication index. Keyed by the URL first, not by the fingerprint alone: the links a
# page yields share its origin and mostly its directories, so one batch of new links lands on a
# few neighbouring leaves of this B-tree instead of one random leaf per link, the cost that
# grew with the frontier once a hash-keyed index outgrew the cache (docs/architecture.md, "The
# frontier at scale"). A fingerprint is a function of its canonical URL (and method and body),
# so (url, fp) is unique exactly when fp is.
_FRONTIER_KEY = "CREATE UNIQUE INDEX IF NOT EXISTS frontier_key ON frontier (url, fp)"
# Entries found by fingerprint alone (the engine names in-flight, done and failed entries by
# ``fp``): only those taken at least once, so a discovered link costs no random insert here.
# A query uses this partial index only if its WHERE repeats TAKEN word for word.
TAKEN = "(state <> 'queued' OR attempts > 0)"
_FRONTIER_TAKEN = f"CREATE INDEX IF NOT EXISTS frontier_taken ON frontier (fp) WHERE {TAKEN}"
# Plain SQL: sqlite-utils' create_index has no WHERE, and the frontier's indexes are partial
# so that scheduling never walks the rows that are done (see crawler.store.frontier).
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS frontier_queue ON frontier (host, priority DESC, seq, not_before)"
    " WHERE state = 'queued'",
    "CREATE INDEX IF NOT EXISTS frontier_delayed ON frontier (not_before)"
    " WHERE state = 'queued' AND not_before > 0",
    "CREATE INDEX IF NOT EXISTS frontier_in_flight ON frontier (fp) WHERE state = 'in_flight'",
    "CREATE INDEX IF NOT EXISTS items_page_url ON items (page_url)",
    "CREATE INDEX IF NOT EXISTS errors_url ON errors (url)",
    "CREATE INDEX IF NOT EXISTS runs_spider ON runs (spider, id)",
    "CREATE INDEX IF NOT EXISTS tracked_items_page ON tracked_items (page_url)",
    "CREATE INDEX IF NOT EXISTS item_versions_key ON item_versions (key, id)",
    "CREATE INDEX IF NOT EXISTS item_changes_run ON item_changes (run_id, id)",
)


def job_from_row(host: str, row: Sequence[Any]) -> Job:
    """The Job of a frontier row of ``host`` taken by either backend: ``row`` is its ``fp,
    url, method, headers, body, callback, meta, depth, attempts, redirect_urls, etag,
    last_modified, content_hash``, in that order."""
    (
        fp, url, method, headers, body, callback, meta, depth, attempts, redirects, etag,
        last_modified, content_hash,
    ) = row  # fmt: skip
    return Job(
        fp=fp,
        url=url,
        host=host,
        method=method,
        headers=tuple((k, v) for k, v in json.loads(headers)) if headers else (),
        body=bytes(body) if body is not None else None,  # PostgreSQL gives a memoryview
        callback=callback,
        meta=json.loads(meta) if meta else None,
        depth=depth,
        attempt=attempts,
        redirect_urls=tuple(json.loads(redirects)) if redirects else (),
        etag=etag,
        last_modified=last_modified,
        content_hash=content_hash,
    )


def to_json(value: Any) -> str | None:
    if value is None or value == () or value == {}:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def item_columns(db: Database) -> dict[str, str]:
    """The ``items`` columns, keyed by their lower-case form (SQLite ignores case)."""
    return {column.name.lower(): column.name for column in db.table("items").columns}


def migrate(db: Database) -> None:
    """Create what is missing; add the columns a newer version declares (never drop)."""
    for name, spec in TABLES.items():
        table = db.table(name)
        if not table.exists():
            table.create(
                dict(spec.columns),
                pk=spec.pk,
                not_null=spec.not_null,
                defaults=dict(spec.defaults),
            )
            continue
        have = {column.name.lower() for column in table.columns}
        for column, kind in spec.columns.items():
            if column in have or column == spec.pk:
                continue
            if column in spec.not_null and column not in spec.defaults:
                continue  # SQLite cannot add NOT NULL without a default to a table with rows
            default = spec.defaults.get(column) if column in spec.not_null else None
            table.add_column(column, kind, not_null_default=default)
    if db.table("frontier").pks == ["fp"]:
        _rekey_frontier(db)
    db.execute("DROP INDEX IF EXISTS frontier_fp")  # version 5's unique (fp), now frontier_key
    db.execute(_FRONTIER_KEY)
    db.execute(_FRONTIER_TAKEN)
    for sql in _INDEXES:
        db.execute(sql)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _rekey_frontier(db: Database) -> None:
    """A frontier from before version 3 (keyed by ``fp``) copied into the integer-keyed table.

    One pass over the rows in insertion order (``seq``); the old table and its indexes go.
    """
    spec = TABLES["frontier"]
    db.execute("ALTER TABLE frontier RENAME TO frontier_before_v3")
    # The renamed table's indexes keep their names; drop them so the new ones can be made.
    for name in ("frontier_queue", "frontier_delayed", "frontier_in_flight"):
        db.execute(f"DROP INDEX IF EXISTS {name}")
    had = {column.name for column in db.table("frontier_before_v3").columns}
    db.table("frontier").create(
        dict(spec.columns), pk=spec.pk, not_null=spec.not_null, defaults=dict(spec.defaults)
    )
    columns = ", ".join(c for c in spec.columns if c in had)
    db.execute(
        f"INSERT INTO frontier ({columns}) SELECT {columns} FROM frontier_before_v3"
        " ORDER BY seq, rowid"
    )
    db.execute("DROP TABLE frontier_before_v3")


def create(db: Database, *, fresh: bool) -> None:
    """Bring the schema up to date; with ``fresh``, also empty the crawl (``runs`` stay)."""
    migrate(db)
    if fresh:
        for name in ("frontier", "pages", "links", "errors", "robots", "cookies"):
            db.execute(f"DELETE FROM {name}")
        # Items get their columns from the data: start from the bare table again.
        db.table("items").drop()
        migrate(db)
