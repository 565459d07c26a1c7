"""The change feed: what a spider's items did since a run, read from ``item_changes``.

``crawler changes`` calls :func:`read_changes` and prints it with :func:`format_changes`.
Each item appears once, with its net change over the runs asked for: the version before the
first of those runs compared with the version after the last. An item added then changed
is ``new`` (as it is now); changed twice is one ``changed`` (first old value -> last new);
added then removed is not listed; removed then back unchanged is not listed either.

The database is opened read-only, as for ``crawler runs``: a SQLite file here, a
``postgresql://`` URL through :func:`crawler.store.postgres.read.item_changes`, which reads the
same rows; which runs count and how they net out is decided here, for both.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from crawler.errors import HistoryError
from crawler.store.api import is_database_url
from crawler.store.connection import connect_read_only
from crawler.store.items import changed_fields

__all__ = ["FORMATS", "format_changes", "read_changes"]

FORMATS = ("table", "jsonl", "csv")
_ORDER = {"new": 0, "changed": 1, "removed": 2}


def read_changes(
    db_path: str | os.PathLike[str],
    spider: str | None = None,
    *,
    since_run: int | None = None,
    since: float | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The net changes of the runs after run ``since_run``, or of the runs started in the
    last ``since`` seconds, or (neither) of the latest run; only ``spider``'s runs if given.

    Each change: ``change`` (new, changed, removed), ``key``, ``run_id`` (the last run that
    changed it), ``page_url``, ``fields`` (changed: {field: [old, new]}) and ``item`` (the
    item now, or for a removed one its last version)."""
    now = time.time() if now is None else now
    if is_database_url(db_path):
        from crawler.store.postgres.read import item_changes

        return _net(
            item_changes(
                os.fspath(db_path), spider, lambda runs: _run_ids(runs, since_run, since, now)
            )
        )
    path = Path(db_path)
    if not path.is_file():
        raise HistoryError(f"no database at {path}")
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open {path}: {exc}") from exc
    try:
        return _read(conn, path, spider, since_run, since, now)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"cannot read {path}: {exc}") from exc
    finally:
        conn.close()


def _read(
    conn: sqlite3.Connection,
    path: Path,
    spider: str | None,
    since_run: int | None,
    since: float | None,
    now: float,
) -> list[dict[str, Any]]:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "runs" not in tables:
        raise HistoryError(f"{path} has no runs table (not a crawl database?)")
    if "item_changes" not in tables:
        raise HistoryError(f"{path} has no item history (does the spider declare item_key?)")
    where, args = ("spider = ?", [spider]) if spider is not None else ("1", [])
    runs = [
        (row[0], row[1])
        for row in conn.execute(f"SELECT id, started_at FROM runs WHERE {where} ORDER BY id", args)
    ]
    ids = _run_ids(runs, since_run, since, now)
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = conn.execute(
        "SELECT key, run_id, change, page_url, old, new FROM item_changes"
        f" WHERE run_id IN ({marks}) ORDER BY key, run_id, id",
        ids,
    ).fetchall()
    return _net(rows)


def _run_ids(
    runs: Sequence[tuple[int, float | None]],
    since_run: int | None,
    since: float | None,
    now: float,
) -> list[int]:
    """Which of ``runs`` (``(id, started_at)``, oldest first) the feed covers."""
    if since_run is not None:
        return [run for run, _ in runs if run > since_run]
    if since is not None:
        return [run for run, started in runs if (started or 0) >= now - since]
    return [runs[-1][0]] if runs else []


def _net(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    first: dict[str, tuple[Any, ...]] = {}
    last: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        first.setdefault(row[0], row)
        last[row[0]] = row
    out: list[dict[str, Any]] = []
    for key, start in first.items():
        end = last[key]
        before = None if start[4] is None else json.loads(start[4])
        after = None if end[5] is None else json.loads(end[5])
        change: dict[str, Any] = {"key": key, "run_id": end[1], "page_url": end[3]}
        if before is None and after is None:
            continue
        if before is None:
            change |= {"change": "new", "fields": {}, "item": after}
        elif after is None:
            change |= {"change": "removed", "fields": {}, "item": before}
        else:
            fields = changed_fields(before, after)
            if not fields:
                continue
            change |= {"change": "changed", "fields": fields, "item": after}
        out.append(change)
    out.sort(key=lambda c: (_ORDER[c["change"]], c["key"]))
    return out


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _detail(change: Mapping[str, Any]) -> str:
    if change["change"] == "changed":
        return "; ".join(
            f"{name}: {_value(old)} -> {_value(new)}"
            for name, (old, new) in change["fields"].items()
        )
    return change["page_url"] or ""


def format_changes(changes: list[dict[str, Any]], fmt: str) -> str:
    """``table`` (for people), ``jsonl`` (one JSON object a line) or ``csv``; ends in a newline
    unless empty."""
    if fmt == "jsonl":
        return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in changes)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["change", "key", "run_id", "page_url", "fields", "item"])
        for c in changes:
            writer.writerow(
                [c["change"], c["key"], c["run_id"], c["page_url"] or "",
                 json.dumps(c["fields"], ensure_ascii=False),
                 json.dumps(c["item"], ensure_ascii=False)]
            )  # fmt: skip
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if not changes:
        return ""
    rows = [("change", "key", "run", "")] + [
        (c["change"], c["key"], str(c["run_id"]), _detail(c)) for c in changes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    ]
    counts = {k: sum(c["change"] == k for c in changes) for k in _ORDER}
    lines.append(f"{counts['new']} new, {counts['changed']} changed, {counts['removed']} removed")
    return "\n".join(line.rstrip() for line in lines) + "\n"
