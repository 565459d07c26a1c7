"""``record()`` on PostgreSQL: the SQLite rules (``crawler/store/results.py``), batched.

A batch is one transaction. The frontier rows of the whole batch are read in one query; the
writes of each kind (page upserts, item deletes and inserts, links, errors, state changes)
go out as one pipelined ``executemany`` each, and the batch's requests and follows as
multi-row inserts deduplicated by ``fp``. Everything is idempotent by key, as in SQLite: a
page upserts by ``url``, a page's items are replaced, a link is a unique pair.

``items`` grows a column per item key, typed from its first value (BIGINT, DOUBLE PRECISION,
BYTEA or TEXT). PostgreSQL types are strict where SQLite's are not, so a later value that does
not fit its column widens the column to TEXT instead of failing the batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from crawler.messages import Follow, NewRequest, Outcome
from crawler.store.api import BatchStats
from crawler.store.items import GONE_STATUSES
from crawler.store.postgres.frontier import FrontierMixin, changed
from crawler.store.postgres.items import ItemsMixin
from crawler.store.postgres.schema import item_columns
from crawler.store.schema import STATES

log = logging.getLogger(__name__)

_RESERVED_ITEM_COLUMNS = {"page_url", "run_id", "ctid", "oid", "xmin", "xmax", "cmin", "cmax",
                          "tableoid"}  # fmt: skip

# The batch's pages, its done rows and its items each go out as one statement over arrays
# (``unnest``), not one execution per row: psycopg's per-row work (a Bind and an Execute
# sent, a result parsed) was the largest part of a node's CPU, and the server's per-statement
# cost came on top. Each array is typed by its cast.
_PAGE_COLUMNS = {
    "url": "text", "status": "bigint", "headers": "text", "content_type": "text",
    "size": "bigint", "body": "bytea", "content_hash": "text", "etag": "text",
    "last_modified": "text", "location": "text", "depth": "bigint",
    "fetched_at": "float8", "elapsed_ms": "float8", "run_id": "bigint",
}  # fmt: skip
_UPSERT_PAGES = (
    f"INSERT INTO pages ({', '.join(_PAGE_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%b::{kind}[]" for kind in _PAGE_COLUMNS.values())
    + ") ON CONFLICT (url) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _PAGE_COLUMNS if name != "url")
)
# A done row keeps its validators when the page did not change and the fetch sent none.
_DONE = (
    "UPDATE frontier SET state = 'done', attempts = attempts + 1, updated_at = %s,"
    " not_before = 0, fetched_at = v.fetched_at, next_due = v.next_due,"
    " etag = CASE WHEN v.unchanged THEN coalesce(v.etag, frontier.etag) ELSE v.etag END,"
    " last_modified = CASE WHEN v.unchanged"
    " THEN coalesce(v.last_modified, frontier.last_modified) ELSE v.last_modified END,"
    " content_hash = coalesce(v.content_hash, frontier.content_hash)"
    " FROM unnest(%b::bigint[], %b::float8[], %b::float8[], %b::bool[], %b::text[], %b::text[],"
    " %b::text[]) AS v(fp, fetched_at, next_due, unchanged, etag, last_modified, content_hash)"
    " WHERE frontier.fp = v.fp"
)
_AT = {name: i for i, name in enumerate(_PAGE_COLUMNS)}  # a page row's value by column
# A page that did not change (a 304, or the same content hash): only what the fetch says.
_TOUCHED = ("url", "fetched_at", "elapsed_ms", "etag", "last_modified")
_TOUCH_PAGES = (
    "UPDATE pages SET fetched_at = v.fetched_at, elapsed_ms = v.elapsed_ms, run_id = %s,"
    " etag = coalesce(v.etag, pages.etag),"
    " last_modified = coalesce(v.last_modified, pages.last_modified)"
    " FROM unnest("
    + ", ".join(f"%b::{_PAGE_COLUMNS[name]}[]" for name in _TOUCHED)
    + f") AS v({', '.join(_TOUCHED)}) WHERE pages.url = v.url RETURNING pages.url"
)
_FAILED = (
    "UPDATE frontier SET state = 'failed', attempts = attempts + 1, updated_at = %s WHERE fp = %s"
)
_RETRY = (
    "UPDATE frontier SET state = 'queued', attempts = attempts + 1, updated_at = %s,"
    " not_before = %s WHERE fp = %s"
)
_SQL_TYPES = {bool: "bigint", int: "bigint", float: "double precision", bytes: "bytea"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(value: Any) -> str:
    return _SQL_TYPES.get(type(value), "text")


def _fits(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind == "bigint":
        return isinstance(value, int)
    if kind == "double precision":
        return isinstance(value, int | float)
    if kind == "bytea":
        return isinstance(value, bytes)
    return True  # text: anything, as text


def _item_value(kind: str, value: Any) -> Any:
    """``value`` as its column of type ``kind`` takes it (it fits: ``_widen_items``). The
    values of a column travel as one array, of one Python type: an int of a DOUBLE PRECISION
    column becomes a float, and a column of a type we did not create (a user's ``ALTER``)
    gets text, which the server casts."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = int(value)
    if kind == "double precision":
        return float(value)
    if kind in ("bigint", "bytea"):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return json.dumps(value, ensure_ascii=False, default=str)


class ResultsMixin(FrontierMixin, ItemsMixin):
    """``record()``: a batch of outcomes into pages, items, links, errors and the frontier."""

    refused = 0  # outcomes a node's record refused: their host's lease had moved on
    _last_refused: frozenset[int] = frozenset()  # ... in its last batch

    def last_refused(self) -> frozenset[int]:
        return self._last_refused

    def record(
        self,
        outcomes: Sequence[Outcome],
        *,
        run_id: int | None,
        store_body: bool = True,
        store_links: bool = False,
        recrawl_after: float | None = None,
        track_items: bool = False,
    ) -> BatchStats:
        now = self._clock()
        pages = items = errors = done = failed = retried = size = 0
        delta = dict.fromkeys(STATES, 0)
        upserts: list[tuple[Any, ...]] = []
        touches: dict[str, tuple[Any, ...]] = {}  # url -> the full row, if none is stored
        replaced: dict[str, list[dict[str, Any]]] = {}
        link_rows: dict[tuple[str, str], None] = {}
        error_rows: list[tuple[Any, ...]] = []
        done_rows: dict[int, tuple[Any, ...]] = {}  # fp -> the _DONE values of its row
        failed_rows: list[tuple[Any, ...]] = []
        retry_rows: list[tuple[Any, ...]] = []
        requests: list[NewRequest] = []
        follows: dict[int, list[Follow]] = {}
        # Pages for the item history, in the batch's order: (outcome, page_url, unchanged).
        tracked: list[tuple[Outcome, str, bool]] = []
        self._widen_items(outcomes)
        # Pipelined: the batch costs two round trips (the frontier rows it reads, then every
        # write and the commit), not one per statement; what each statement changed is
        # counted from its cursor once the transaction has committed.
        with self._pipelined_tx("record results in") as conn:
            if self.node_id is None:
                known = {
                    fp: (state, depth)
                    for fp, state, depth in conn.execute(
                        "SELECT fp, state, depth FROM frontier WHERE fp = ANY(%s)",
                        ([o.fp for o in outcomes],),
                    )
                }
            else:
                known, outcomes = self._fenced(conn, outcomes)
            for o in outcomes:
                row = known.get(o.fp)
                depth = row[1] if row else (o.page.depth if o.page else 0)
                page = o.page
                unchanged = bool(o.stats.get("unchanged"))
                if page is not None:
                    pages += 1
                    size += page.size
                    if page.status == 304:
                        unchanged = True
                    # float(): a column's values go as one array, which may not mix ints
                    # and floats.
                    full = (
                        page.url, page.status, page.headers, page.content_type, page.size,
                        page.body if store_body else None, page.content_hash, page.etag,
                        page.last_modified, page.location, page.depth, float(page.fetched_at),
                        float(page.elapsed_ms), run_id,
                    )  # fmt: skip
                    if unchanged:
                        touches[page.url] = full
                    else:
                        upserts.append(full)
                page_url = page.url if page is not None else o.url
                if not unchanged and (page is not None or o.items):
                    replaced[page_url] = [(dict(item) | {"\0run": run_id}) for item in o.items]
                if (
                    track_items
                    and page is not None
                    and (unchanged or o.callback is not None or page.status in GONE_STATUSES)
                ):
                    tracked.append((o, page_url, unchanged))
                if store_links and o.links:
                    for to in o.links:
                        link_rows[(page_url, to)] = None
                for f in o.failures:
                    error_rows.append((f.url, f.kind, f.message, f.traceback, run_id, now))
                errors += len(o.failures)
                new_state = "queued" if o.state == "retry" else o.state
                if row is not None:
                    delta[row[0]] -= 1
                    delta[new_state] += 1
                if o.state == "done":
                    done += 1
                    fetched = float(page.fetched_at if page is not None else now)
                    etag = page.etag if page else None
                    modified = page.last_modified if page else None
                    done_rows[o.fp] = (
                        o.fp, fetched, None if recrawl_after is None else fetched + recrawl_after,
                        unchanged, etag, modified, page.content_hash if page else None,
                    )  # fmt: skip
                elif o.state == "failed":
                    failed += 1
                    failed_rows.append((now, o.fp))
                else:
                    retried += 1
                    retry_rows.append((now, o.retry_at or 0.0, o.fp))
                requests.extend(o.requests)
                if o.follows:
                    follows.setdefault(depth + 1, []).extend(o.follows)
            # New URLs first: another node's batch may be inserting the same new links (rows
            # go in by fp, one lock order) while holding its own rows' updates; inserting
            # before updating ours means no node waits on us while we wait on it (a
            # deadlock, each costing the server's deadlock_timeout, measured at 1/s here).
            added = self._add_in_tx(conn, requests) if requests else (None, None)
            followed = None
            if follows:
                followed = self._add_follows_in_tx(
                    conn, [(*f, d) for d, batch in follows.items() for f in batch], now
                )
            with conn.cursor() as cur:
                if touches:
                    # fetchall waits for this answer: which pages were there to touch.
                    rows = list(touches.values())
                    arrays = [[r[_AT[c]] for r in rows] for c in _TOUCHED]
                    urls = cur.execute(_TOUCH_PAGES, (run_id, *arrays)).fetchall()
                    for (url,) in urls:
                        del touches[url]
                    upserts.extend(touches.values())  # nothing stored to confirm: store it
                if upserts:
                    # One row per url: an upsert may not touch a row twice.
                    unique = list({u[0]: u for u in upserts}.values())
                    cur.execute(_UPSERT_PAGES, [list(c) for c in zip(*unique, strict=True)])
                if replaced:
                    # Never prepared: a plan fixed while ``items`` was nearly empty (the
                    # first runs of a fresh crawl) is a sequential scan, kept for the whole
                    # crawl by that connection (measured: 0.23 ms a call instead of 0.02).
                    cur.execute(
                        "DELETE FROM items WHERE page_url = ANY(%s)",
                        (list(replaced),),
                        prepare=False,
                    )
                    items = self._insert_items(cur, replaced)
                linked = None
                if link_rows:
                    sources, targets = zip(*link_rows, strict=True)
                    linked = conn.execute(
                        "INSERT INTO links (from_url, to_url)"
                        " SELECT * FROM unnest(%b::text[], %b::text[]) ON CONFLICT DO NOTHING",
                        (list(sources), list(targets)),
                    )
                if error_rows:
                    cur.executemany(
                        "INSERT INTO errors (url, kind, message, traceback, run_id, at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        error_rows,
                    )
                if done_rows:
                    columns = zip(*done_rows.values(), strict=True)
                    cur.execute(_DONE, (now, *(list(c) for c in columns)))
                for sql, rows in ((_FAILED, failed_rows), (_RETRY, retry_rows)):
                    if rows:
                        cur.executemany(sql, rows)
                for o, page_url, unchanged in tracked:
                    if unchanged:
                        self._confirm_items(cur, page_url, run_id)
                    else:
                        complete = o.state == "done" and not o.failures
                        self._track(cur, page_url, run_id, o.items, o.item_keys, complete=complete)
        links = changed(linked)
        new = self._added(*added) + changed(followed)
        for state, d in delta.items():
            self._counts[state] += d
        self._counts["queued"] += new
        return BatchStats(
            pages=pages, items=items, errors=errors, links=links, new_requests=new,
            done=done, failed=failed, retried=retried, bytes=size,
        )  # fmt: skip

    def _fenced(
        self, conn: Any, outcomes: Sequence[Outcome]
    ) -> tuple[dict[int, tuple[str, int]], list[Outcome]]:
        """The frontier rows of a node's batch, and the outcomes it may still write.

        An outcome whose row is known but no longer in flight under this node and its host's
        current lease epoch was taken over (cluster.py): it is refused, the URL stays with the
        new owner. Reading the lease ``FOR SHARE`` holds a takeover (``SKIP LOCKED``) off
        until this batch commits."""
        known: dict[int, tuple[str, int]] = {}
        refused: set[int] = set()
        for fp, state, depth, ok in conn.execute(
            "SELECT f.fp, f.state, f.depth, f.state = 'in_flight' AND f.node = %s"
            " AND l.epoch IS NOT DISTINCT FROM f.epoch FROM frontier f LEFT JOIN LATERAL ("
            " SELECT epoch FROM host_leases WHERE run_id = %s AND host = f.host AND owner = %s"
            " FOR SHARE) l ON true WHERE f.fp = ANY(%s)",
            (self.node_id, self.joined_run, self.node_id, [o.fp for o in outcomes]),
        ):
            if ok:
                known[fp] = (state, depth)
            else:
                refused.add(fp)
        self._last_refused = frozenset(refused)
        if not refused:
            return known, list(outcomes)
        log.info("refused %d results of hosts this node no longer holds", len(refused))
        self.refused += len(refused)
        return known, [o for o in outcomes if o.fp not in refused]

    def _widen_items(self, outcomes: Sequence[Outcome]) -> None:
        """Give ``items`` a column for each new item key of ``outcomes`` (typed from its
        value), and turn a column whose type a value does not fit into TEXT.

        Its own transaction, before the batch's: a schema change inside the pipelined batch
        makes psycopg drop its prepared statements while the pipeline still registers new
        ones, which then fail ("prepared statement does not exist"). A column added for a
        batch that then fails stays, empty, as a later batch would add it."""
        known = self._item_columns
        # lower-case name -> (name, the value that types it: a new column's first)
        wanted: dict[str, tuple[str, Any]] = {}
        for o in outcomes:
            for item in o.items:
                for key, value in item.items():
                    name = _column_name(key)
                    column = known.get(name.lower())
                    if column is None:
                        wanted.setdefault(name.lower(), (name, value))
                    elif not _fits(column[1], value):
                        wanted[name.lower()] = (column[0], value)
        if not wanted:
            return
        with self._tx("add item columns to") as conn:
            for lower, (name, value) in wanted.items():
                column = known.get(lower)
                if column is None:
                    # IF NOT EXISTS: another node may have added it since we looked (its
                    # lock makes us wait for its commit); then its type is the one.
                    conn.execute(
                        f"ALTER TABLE items ADD COLUMN IF NOT EXISTS {_quote(name)}"
                        f" {_sql_type(value)}"
                    )
                    known.update(item_columns(conn))
                    column = known[lower]
                if not _fits(column[1], value):
                    conn.execute(
                        f"ALTER TABLE items ALTER COLUMN {_quote(column[0])} TYPE text"
                        f" USING {_quote(column[0])}::text"
                    )
                    known[lower] = (column[0], "text")
        # A later value of a batch may not fit the type the first one chose: look again.
        self._widen_items(outcomes)

    def _insert_items(self, cur: Any, replaced: dict[str, list[dict[str, Any]]]) -> int:
        """Insert the items of ``replaced`` (every column exists: ``_widen_items``)."""
        known = self._item_columns
        by_columns: dict[tuple[str, ...], list[list[Any]]] = {}  # column names -> rows
        for page_url, page_items in replaced.items():
            for item in page_items:
                run_id = item.pop("\0run")
                values: dict[str, Any] = {"page_url": page_url, "run_id": run_id}
                for key, value in item.items():
                    name, kind = known[_column_name(key).lower()]
                    values[name] = _item_value(kind, value)
                by_columns.setdefault(tuple(values), []).append(list(values.values()))
        n = 0
        for names, rows in by_columns.items():
            arrays = ", ".join(f"%b::{known[name.lower()][1]}[]" for name in names)
            cur.execute(
                f"INSERT INTO items ({', '.join(map(_quote, names))})"
                f" SELECT * FROM unnest({arrays})",
                [list(c) for c in zip(*rows, strict=True)],
            )
            n += len(rows)
        return n


def _column_name(key: Any) -> str:
    """The ``items`` column of an item key: a system column's name gets a ``_`` in front."""
    name = str(key) or "_"
    return "_" + name if name.lower() in _RESERVED_ITEM_COLUMNS else name
