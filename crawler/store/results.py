"""Recording outcomes: ``record()`` writes one batch of pages, items, links and errors.

A batch is one transaction: all of it or nothing, so a kill -9 loses at most the batch being
written. Everything it writes is idempotent by key (pages upsert by ``url``, a page's items
are replaced by ``page_url``, links are unique pairs), so a batch re-fetched after a crash is
never stored twice. Each outcome also moves its frontier entry (done, failed, or queued again
for a retry) and queues its requests and follows, which is why this extends the frontier.

``items`` has no fixed columns: each new item key adds one, typed from its first value; keys
that would clash with our own columns get a ``_`` prefix.

This is the hot path (thousands of rows a second), so it is plain SQL over the one connection:
sqlite-utils' ``insert_all``/``upsert_all`` look the table and its columns up again on every
call (a 50-row batch of links took about twice as long through ``insert_all`` as through
``executemany``), and record() makes several calls per outcome. Only adding a column, which
happens once per new item key, goes through sqlite-utils (``add_column``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from crawler.messages import Outcome
from crawler.store.api import BatchStats
from crawler.store.frontier import FrontierMixin
from crawler.store.items import GONE_STATUSES, ItemsMixin
from crawler.store.schema import STATES

# Item keys that would clash with our own columns get this prefix.
_RESERVED_ITEM_COLUMNS = {"page_url", "run_id", "rowid", "oid", "_rowid_"}

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


class ResultsMixin(FrontierMixin, ItemsMixin):
    """``record()``: a batch of outcomes into pages, items, links, errors and the frontier."""

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
        """Write a batch of outcomes in one transaction: all of it or nothing.

        For each outcome: its page (upsert by url; a 304 only refreshes the stored row), its
        items (replacing the page's earlier items, unless the page was unchanged: a 304 or
        ``stats["unchanged"]``), links, errors, the frontier entry's new state (``retry``
        means queued again with ``not_before = retry_at``), then its ``requests`` and its
        ``follows`` (one level deeper than the job). With ``track_items`` (the spider has
        ``item_key``) a page's keyed items also go through the item history
        (:mod:`crawler.store.items`).
        """
        now = self._clock()
        pages = items = errors = links = new = done = failed = retried = size = 0
        counts = self._counts
        delta = dict.fromkeys(STATES, 0)
        with self._tx("record results in") as conn:
            before_new = 0
            for o in outcomes:
                # By (url, fp), the unique index: an outcome names its Job's frontier URL.
                row = conn.execute(
                    "SELECT state, depth, id FROM frontier WHERE url = ? AND fp = ?",
                    (o.url, o.fp),
                ).fetchone()
                depth = row[1] if row else (o.page.depth if o.page else 0)
                entry = row[2] if row else None  # None: an unknown entry, no row changes
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
                if track_items and page is not None:
                    if unchanged:
                        self._confirm_items(conn, page_url, run_id)
                    elif o.callback is not None or page.status in GONE_STATUSES:
                        self._track(
                            conn,
                            page_url,
                            run_id,
                            o.items,
                            o.item_keys,
                            complete=o.state == "done" and not o.failures,
                        )
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
                        " content_hash = coalesce(?, content_hash) WHERE id = ?",
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
                            entry,
                        ),
                    )
                elif o.state == "failed":
                    failed += 1
                    conn.execute(
                        "UPDATE frontier SET state = 'failed', attempts = attempts + 1,"
                        " updated_at = ? WHERE id = ?",
                        (now, entry),
                    )
                else:
                    retried += 1
                    conn.execute(
                        "UPDATE frontier SET state = 'queued', attempts = attempts + 1,"
                        " updated_at = ?, not_before = ? WHERE id = ?",
                        (now, o.retry_at or 0.0, entry),
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
                    self.db.table("items").add_column(name, _sql_type(value))
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
