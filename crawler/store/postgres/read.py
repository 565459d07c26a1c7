"""The read-only paths of the command line on PostgreSQL: ``crawler runs``/``stats`` read the
``runs`` table, ``crawler changes`` the item history and ``crawler export`` streams a table,
through one read-only connection (``default_transaction_read_only``), so reading never
changes the database.

A server-side (named) cursor streams an export in chunks instead of loading the table.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import psycopg

from crawler.errors import ExportError, HistoryError, NotACrawlDatabase
from crawler.store.postgres.connection import first_line, without_password


def _connect(url: str, error: type[Exception]) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, options="-c default_transaction_read_only=on")
    except psycopg.Error as exc:
        raise error(f"cannot open {without_password(url)}: {first_line(exc)}") from None


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " ORDER BY table_name"
    ).fetchall()
    return [str(row[0]) for row in rows]


def read_runs(url: str, spider: str | None = None) -> list[dict[str, Any]]:
    """The runs in the database at ``url`` (of ``spider`` only), oldest first, stats decoded."""
    with _connect(url, HistoryError) as conn:
        if "runs" not in _tables(conn):
            raise NotACrawlDatabase(f"{without_password(url)} has no runs table")
        where, args = ("WHERE spider = %s", [spider]) if spider is not None else ("", [])
        cur = conn.execute(f"SELECT * FROM runs {where} ORDER BY id", args)
        names = [d.name for d in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        if rows and "nodes" in _tables(conn):
            _attach_nodes(conn, rows)
    for row in rows:
        try:
            row["stats"] = json.loads(row.get("stats") or "{}")
        except ValueError:
            row["stats"] = {}
    return rows


_NODE_COLUMNS = ("id", "hostname", "pid", "state", "pages", "items", "heartbeat_at", "exit_code")


def _attach_nodes(conn: psycopg.Connection[Any], runs: list[dict[str, Any]]) -> None:
    """Give each run its ``nodes`` rows (oldest first), the machines that ran it."""
    by_run: dict[int, list[dict[str, Any]]] = {}
    cur = conn.execute(
        f"SELECT run_id, {', '.join(_NODE_COLUMNS)} FROM nodes WHERE run_id = ANY(%s) ORDER BY id",
        ([run["id"] for run in runs],),
    )
    for run_id, *values in cur.fetchall():
        by_run.setdefault(run_id, []).append(dict(zip(_NODE_COLUMNS, values, strict=True)))
    for run in runs:
        run["nodes"] = by_run.get(run["id"], [])


def item_changes(
    url: str,
    spider: str | None,
    pick: Callable[[Sequence[tuple[int, float | None]]], list[int]],
) -> list[tuple[Any, ...]]:
    """The ``item_changes`` rows (key, run_id, change, page_url, old, new; by key, run, id) of
    the runs ``pick`` chooses among ``spider``'s (every run's if None): ``(id, started_at)``,
    oldest first. The reading of ``crawler.store.changes.read_changes``, which nets them."""
    with _connect(url, HistoryError) as conn:
        try:
            tables = _tables(conn)
            if "runs" not in tables:
                raise HistoryError(
                    f"{without_password(url)} has no runs table (not a crawl database?)"
                )
            if "item_changes" not in tables:
                raise HistoryError(
                    f"{without_password(url)} has no item history"
                    " (does the spider declare item_key?)"
                )
            where, args = ("WHERE spider = %s", [spider]) if spider is not None else ("", [])
            runs = conn.execute(f"SELECT id, started_at FROM runs {where} ORDER BY id", args)
            ids = pick([(int(run), started) for run, started in runs.fetchall()])
            if not ids:
                return []
            return conn.execute(
                "SELECT key, run_id, change, page_url, old, new FROM item_changes"
                " WHERE run_id = ANY(%s) ORDER BY key, run_id, id",
                (ids,),
            ).fetchall()
        except psycopg.Error as exc:
            raise HistoryError(f"cannot read {without_password(url)}: {first_line(exc)}") from None


@contextlib.contextmanager
def table_rows(
    url: str, table: str, *, skip_blobs: bool
) -> Iterator[tuple[list[str], Generator[tuple[Any, ...], None, None]]]:
    """The columns of ``table`` (a table or a view) and a generator of its rows, table rows in
    ``ctid`` order (storage order: insertion order until a row is updated or vacuumed), a
    view's in its own. Leaving the block closes the generator, then the connection, whether
    the rows were read or not (closing a generator that never started runs no ``finally``)."""
    conn = _connect(url, ExportError)
    try:
        kinds = dict(
            conn.execute(
                "SELECT table_name, table_type FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            ).fetchall()
        )
        if table not in kinds:
            known = ", ".join(sorted(kinds)) or "none"
            raise ExportError(f"no table {table!r} in {without_password(url)} (tables: {known})")
        columns = [
            str(name)
            for name, kind in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s"
                " ORDER BY ordinal_position",
                (table,),
            )
            if not (skip_blobs and kind == "bytea")
        ]
        # A view has no ctid.
        order = " ORDER BY ctid" if kinds[table] == "BASE TABLE" else ""
        rows = _stream(conn, url, table, columns, order)
        try:
            yield columns, rows
        finally:
            rows.close()  # before the connection: its cursor must not outlive it
    finally:
        conn.close()


def _stream(
    conn: psycopg.Connection[Any], url: str, table: str, columns: list[str], order: str
) -> Generator[tuple[Any, ...], None, None]:
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    name = '"' + table.replace('"', '""') + '"'
    try:
        with conn.cursor(name="export") as cur:
            cur.execute(f"SELECT {quoted} FROM {name}{order}")
            for row in cur:
                yield tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
    except psycopg.Error as exc:
        raise ExportError(
            f"reading {table!r} from {without_password(url)} failed: {first_line(exc)}"
        ) from None


def stored_pages(url: str, run_id: int | None) -> tuple[list[tuple[str, int | None]], int]:
    """``(url, status)`` of the pages run ``run_id`` (None: every run) stored, and its items."""
    with _connect(url, HistoryError) as conn:
        where, args = ("WHERE run_id = %s", [run_id]) if run_id is not None else ("", [])
        pages = conn.execute(f"SELECT url, status FROM pages {where}", args).fetchall()
        items = conn.execute(f"SELECT count(*) FROM items {where}", args).fetchone()
    return [(str(u), s) for u, s in pages], int(items[0]) if items else 0
