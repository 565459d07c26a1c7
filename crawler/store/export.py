"""Export one table of a crawl database as JSON Lines or CSV, streamed and never half-written.

How this works: the database is opened read-only (a running crawl keeps writing; WAL lets us
read a consistent snapshot meanwhile) and rows are written as the cursor yields them, so memory
stays flat whatever the table size. With an output path, rows go to a temporary file in the
same folder, which is flushed, fsynced and then ``os.replace``-d over the target: a reader sees
the old file or the complete new one, never a partial export. Without a path they go to stdout.

Value mapping:

- TEXT, INTEGER, REAL, NULL are written as they are; JSON stored as text (``headers``,
  ``stats``, list or dict item fields) stays text in both formats, so an export round-trips.
  In CSV, NULL is an empty field.
- BLOB values (``pages.body``) are base64 text with ``blobs="base64"`` (the default). With
  ``blobs="skip"`` the columns declared BLOB are left out, and a bytes value met in any other
  column is written as null / empty.

Rows come in rowid order when the table has one (on PostgreSQL: a table's in ``ctid`` order, a
view's in its own).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from crawler.store.api import is_database_url
from crawler.store.connection import connect_read_only, database

if TYPE_CHECKING:
    from sqlite_utils import Database

from crawler.errors import ExportError

__all__ = ["export_table"]

Format = Literal["jsonl", "csv"]
Blobs = Literal["base64", "skip"]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect(db_path: Path) -> Database:
    if not db_path.is_file():
        raise ExportError(f"no database at {db_path}")
    try:
        db = database(connect_read_only(db_path))
        db.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ExportError(f"cannot read {db_path} as SQLite: {exc}") from exc
    return db


def _columns(db: Database, db_path: Path, table: str) -> list[tuple[str, str]]:
    views = db.view_names()
    if table not in views and table not in db.table_names():
        names = sorted(db.table_names() + views)
        known = ", ".join(n for n in names if not n.startswith("sqlite_")) or "none"
        raise ExportError(f"no table {table!r} in {db_path} (tables: {known})")
    source = db.view(table) if table in views else db.table(table)
    return [(column.name, (column.type or "").upper()) for column in source.columns]


def _rows(db: Database, table: str, columns: list[str]) -> Generator[tuple[Any, ...], None, None]:
    # A plain cursor, not rows_where(): rows stream as tuples, and a view (no rowid) falls
    # back to its own order.
    query = f"select {', '.join(map(_quote, columns))} from {_quote(table)}"
    try:
        cursor = db.execute(query + " order by rowid")
    except sqlite3.OperationalError:  # a view or a WITHOUT ROWID table
        cursor = db.execute(query)
    yield from cursor


def _value(value: Any, blobs: Blobs) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii") if blobs == "base64" else None
    return value


def _write(
    stream: TextIO,
    fmt: Format,
    columns: list[str],
    rows: Iterator[tuple[Any, ...]],
    blobs: Blobs,
) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else _value(v, blobs) for v in row])
            count += 1
    else:
        for row in rows:
            record = {c: _value(v, blobs) for c, v in zip(columns, row, strict=True)}
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def _atomic_write(
    out: Path, fmt: Format, columns: list[str], rows: Iterator[tuple[Any, ...]], blobs: Blobs
) -> int:
    folder = out.parent
    if not folder.is_dir():
        raise ExportError(f"no folder {folder} for {out}")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write to {folder}: {exc}") from exc
    tmp = Path(tmp_name)
    try:
        # newline="" so the csv module's line endings pass through untranslated.
        with open(fd, "w", encoding="utf-8", newline="") as stream:
            count = _write(stream, fmt, columns, rows, blobs)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def export_table(
    db_path: str | os.PathLike[str],
    table: str = "items",
    fmt: Format = "jsonl",
    out: str | os.PathLike[str] | None = None,
    *,
    blobs: Blobs = "base64",
    stream: TextIO | None = None,
) -> int:
    """Write every row of ``table`` to ``out`` (atomically) or to ``stream`` / stdout.

    Returns the number of rows written. Raises :class:`ExportError` for a missing database or
    table, an unknown format, or an output folder that does not exist.
    """
    if fmt not in ("jsonl", "csv"):
        raise ExportError(f"unknown format {fmt!r} (use jsonl or csv)")
    if blobs not in ("base64", "skip"):
        raise ExportError(f"unknown blobs mode {blobs!r} (use base64 or skip)")
    if is_database_url(db_path):
        from crawler.store.postgres.read import table_rows

        with table_rows(os.fspath(db_path), table, skip_blobs=blobs == "skip") as (names, pg_rows):
            if out is not None:
                return _atomic_write(Path(out), fmt, names, pg_rows, blobs)
            return _write(stream or sys.stdout, fmt, names, pg_rows, blobs)
    path = Path(db_path)
    db = _connect(path)
    rows: Generator[tuple[Any, ...], None, None] | None = None
    try:
        columns = [
            name
            for name, decl in _columns(db, path, table)
            if not (blobs == "skip" and decl == "BLOB")
        ]
        rows = _rows(db, table, columns)
        if out is not None:
            return _atomic_write(Path(out), fmt, columns, rows, blobs)
        return _write(stream or sys.stdout, fmt, columns, rows, blobs)
    except sqlite3.Error as exc:
        raise ExportError(f"reading {table!r} from {path} failed: {exc}") from exc
    finally:
        if rows is not None:
            rows.close()  # before the connection: its cursor must not outlive it
        db.close()
