"""Stored bodies and items read back for ``crawler reparse``, and its ``--write``.

Reading is read-only (``mode=ro``, like ``crawler runs``): a reparse without ``--write``
never creates or changes anything. A page belongs to the run that last fetched it
(``pages.run_id``; a 304 moves a page to the run that confirmed it, body kept), so "the bodies
of run N" are the pages whose latest fetch was in run N and whose body was kept
(``store_body``). Each page comes with the callback and meta its frontier entry asked for.

Items are compared in their stored form: :func:`stored_form` turns a callback's item into
what ``record()`` would write (reserved keys ``_``-prefixed, lists and dicts as JSON, booleans
as integers, no NULLs), so a reparse reports what would change in the table, not noise.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.errors import HistoryError
from crawler.store.connection import connect_read_only
from crawler.store.results import _RESERVED_ITEM_COLUMNS, _item_value

__all__ = ["StoredPage", "latest_run", "stored_form", "stored_items", "stored_pages_with_bodies",
           "write_items"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredPage:
    """One stored response: enough to run a callback on it again."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    depth: int
    callback: str | None
    meta: dict[str, Any] | None


def _open(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    path = Path(db_path)
    if not path.is_file():
        raise HistoryError(f"no database at {path}")
    try:
        return connect_read_only(path)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open {path}: {exc}") from exc


def latest_run(db_path: str | os.PathLike[str]) -> int | None:
    """The newest run that has stored bodies in ``db_path`` (a reparse run stores none);
    None when there is none."""
    conn = _open(db_path)
    try:
        row = conn.execute("SELECT max(run_id) FROM pages WHERE body IS NOT NULL").fetchone()
    except sqlite3.Error as exc:
        raise HistoryError(f"{db_path}: not a crawl database ({exc})") from exc
    finally:
        conn.close()
    return None if row is None or row[0] is None else int(row[0])


_PAGES = (
    "SELECT p.url, p.status, p.headers, p.body, p.depth,"
    " (SELECT f.callback FROM frontier f WHERE f.url = p.url LIMIT 1),"
    " (SELECT f.meta FROM frontier f WHERE f.url = p.url LIMIT 1)"
    " FROM pages p WHERE p.run_id = ? AND p.body IS NOT NULL ORDER BY p.url"
)


def stored_pages_with_bodies(db_path: str | os.PathLike[str], run_id: int) -> Iterator[StoredPage]:
    """The pages of run ``run_id`` that kept their body, in URL order, one at a time."""
    conn = _open(db_path)
    try:
        for url, status, headers, body, depth, callback, meta in conn.execute(_PAGES, (run_id,)):
            yield StoredPage(
                url=str(url),
                status=int(status or 0),
                headers=json.loads(headers) if headers else {},
                body=bytes(body),
                depth=int(depth or 0),
                callback=callback,
                meta=json.loads(meta) if meta else None,
            )
    except sqlite3.Error as exc:
        raise HistoryError(f"{db_path}: cannot read stored pages ({exc})") from exc
    finally:
        conn.close()


def stored_items(db_path: str | os.PathLike[str], run_id: int) -> dict[str, list[dict[str, Any]]]:
    """The items stored now for each page of run ``run_id``, by page URL (without
    ``page_url``/``run_id`` and NULLs)."""
    found: dict[str, list[dict[str, Any]]] = {}
    conn = _open(db_path)
    try:
        cursor = conn.execute(
            "SELECT * FROM items WHERE page_url IN (SELECT url FROM pages WHERE run_id = ?)"
            " ORDER BY rowid",
            (run_id,),
        )
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    except sqlite3.OperationalError:  # no item was ever stored: the table was never created
        names, rows = [], []
    finally:
        conn.close()
    for row in rows:
        item = dict(zip(names, row, strict=True))
        url = item.pop("page_url", None)
        item.pop("run_id", None)
        found.setdefault(str(url), []).append({k: v for k, v in item.items() if v is not None})
    return found


def stored_form(item: Mapping[str, Any]) -> dict[str, Any]:
    """``item`` as ``record()`` stores it (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        name = "_" + key if key.lower() in _RESERVED_ITEM_COLUMNS else key
        stored = _item_value(value)
        if stored is not None:
            out[name] = stored
    return out


def write_items(
    db_path: str | os.PathLike[str],
    spider: str,
    items: Mapping[str, Sequence[dict[str, Any]]],
    *,
    reparse_of: int,
) -> int:
    """Store ``items`` (page URL -> its new items) as a new run of ``spider``; its id.

    Each page's earlier items are replaced, as a crawl that fetched it again would; pages
    and the frontier are left alone. The run's row says which run it reparsed.
    """
    from crawler.store.sqlite import Store

    store = Store(Path(db_path))
    try:
        run_id = store.begin_run(spider, {"reparse_of": reparse_of})
        count = 0
        with store._tx("store reparsed items in") as conn:
            for page_url, page_items in items.items():
                conn.execute("DELETE FROM items WHERE page_url = ?", (page_url,))
                count += store._insert_items(page_url, run_id, page_items)
        store.end_run(
            run_id,
            exit_code=0,
            finish_reason="reparse",
            stats={"pages": len(items), "items": count, "reparse_of": reparse_of},
        )
    finally:
        store.close()
    return run_id
