"""Read the ``runs`` table of a crawl database for people: ``crawler runs`` and ``crawler stats``.

The database is opened read-only (``mode=ro``), so reading the history never creates a file,
never changes a schema and never waits behind a running crawl's writes (WAL). A run whose
``finished_at`` is NULL was killed, or is still going: :func:`run_state` tells which by
asking whether the process that started it is alive on this machine.

Raises :class:`~crawler.errors.HistoryError`: no such database, not a crawl database (a
:class:`~crawler.errors.NotACrawlDatabase`), no such run.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crawler.errors import HistoryError, NotACrawlDatabase
from crawler.progress import format_duration
from crawler.store.api import is_database_url
from crawler.store.connection import connect_read_only, database

__all__ = [
    "format_run",
    "format_runs",
    "read_every_run",
    "read_runs",
    "run_state",
]


def read_runs(db_path: str | os.PathLike[str], spider: str | None = None) -> list[dict[str, Any]]:
    """The runs in ``db_path`` (of ``spider`` only, if given), oldest first, JSON decoded."""
    if is_database_url(db_path):
        from crawler.store.postgres.read import read_runs as read_postgres_runs

        return read_postgres_runs(os.fspath(db_path), spider)
    path = Path(db_path)
    if not path.is_file():
        raise HistoryError(f"no database at {path}")
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open {path}: {exc}") from exc
    try:
        runs = database(conn).table("runs")
        if not runs.exists():
            raise NotACrawlDatabase(f"{path} has no runs table (not a crawl database?)")
        where, args = ("spider = ?", [spider]) if spider is not None else (None, None)
        rows = list(runs.rows_where(where, args, order_by="id"))
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"cannot read {path}: {exc}") from exc
    finally:
        conn.close()
    for row in rows:
        try:
            row["stats"] = json.loads(row.get("stats") or "{}")
        except ValueError:
            row["stats"] = {}
    return rows


def read_every_run(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The runs of every crawl database (``*.db``) in ``data_dir``, oldest first by start time.

    Other SQLite files there (no ``runs`` table) are passed over; one that cannot be read at
    all is an error, so a broken database is never silently left out of the listing.
    """
    runs: list[dict[str, Any]] = []
    for path in sorted(Path(data_dir).glob("*.db")):
        try:
            runs += read_runs(path)
        except NotACrawlDatabase:
            continue
    runs.sort(key=lambda run: (run.get("started_at") or 0.0, str(run["spider"]), run["id"]))
    return runs


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A node silent this long is surely gone: a heartbeat every 0.5 s, taken for dead by the
# other nodes after lease_ttl + grace (91 s with the defaults).
NODE_SILENT = 120.0


def run_state(run: Mapping[str, Any], now: float | None = None) -> str:
    """``finished``, ``running`` (its process is alive; on PostgreSQL: a node heartbeats) or
    ``killed`` (it never finished)."""
    if run.get("finished_at") is not None:
        return "finished"
    nodes = run.get("nodes")
    if nodes:  # a run shared by nodes (PostgreSQL): their heartbeats say
        now = time.time() if now is None else now
        alive = [n for n in nodes if n["state"] in ("seeding", "running") and _fresh(n, now)]
        return "running" if alive else "killed"
    if run.get("hostname") not in (None, socket.gethostname()):
        return "running?"  # another machine: we cannot tell
    return "running" if _alive(run.get("pid")) else "killed"


def _fresh(node: Mapping[str, Any], now: float) -> bool:
    beat = node.get("heartbeat_at")
    return isinstance(beat, int | float) and now - beat < NODE_SILENT


def _node_lines(nodes: list[Mapping[str, Any]], now: float) -> list[str]:
    """One line per node of a shared run: where it ran, its state, what it stored."""
    lines = []
    for n in nodes:
        beat = n.get("heartbeat_at")
        ago = "-"
        if isinstance(beat, int | float):
            ago = f"{format_duration(max(0.0, now - beat))} ago"
        state = str(n["state"])
        if n.get("exit_code") is not None:
            state += f" (exit {n['exit_code']})"
        elif state in ("seeding", "running") and not _fresh(n, now):
            state += " (silent)"
        lines.append(
            f"node {n['id']:<6} {n.get('hostname') or '?'}:{n.get('pid') or '?'}  {state},"
            f" {n.get('pages', 0)} pages, {n.get('items', 0)} items, heartbeat {ago}"
        )
    return lines


def _when(ts: object) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _duration(run: Mapping[str, Any]) -> str:
    elapsed = run["stats"].get("elapsed")
    if isinstance(elapsed, int | float):
        return format_duration(float(elapsed))
    started, finished = run.get("started_at"), run.get("finished_at")
    if isinstance(started, int | float) and isinstance(finished, int | float):
        return format_duration(max(0.0, finished - started))
    return "-"


def _reason(run: Mapping[str, Any]) -> str:
    state = run_state(run)
    return str(run.get("finish_reason") or "") if state == "finished" else f"({state})"


_COLUMNS = ("id", "spider", "started", "finished", "duration", "exit", "reason", "pages",
            "items", "errors")  # fmt: skip


def format_runs(runs: list[dict[str, Any]]) -> str:
    """A table of runs, newest first, one per line, with a header."""
    table = [_COLUMNS]
    for run in reversed(runs):
        stats = run["stats"]
        exit_code = run.get("exit_code")
        table.append((
            str(run["id"]), str(run["spider"]), _when(run.get("started_at")),
            _when(run.get("finished_at")), _duration(run),
            "-" if exit_code is None else str(exit_code), _reason(run),
            str(stats.get("pages", "-")), str(stats.get("items", "-")),
            str(stats.get("errors", "-")),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    numeric = {0, 5, 7, 8, 9}
    lines = []
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _size(n: object) -> str:
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


def _counts(mapping: object) -> str:
    if not isinstance(mapping, Mapping) or not mapping:
        return "-"
    return ", ".join(f"{key} {value}" for key, value in mapping.items())


def format_run(run: Mapping[str, Any]) -> str:
    """One run in detail: status, times, pages by status, items, errors by kind, bytes, hosts."""
    stats = run["stats"]
    exit_code = run.get("exit_code")
    now = time.time()
    state = run_state(run, now)
    nodes = run.get("nodes") or []
    head = f"run {run['id']} of {run['spider']}: "
    if state == "finished":
        head += f"{run.get('finish_reason')} (exit {exit_code})"
    elif nodes:
        pages = sum(n.get("pages", 0) for n in nodes)
        items = sum(n.get("items", 0) for n in nodes)
        head += (
            f"{state}, {pages} pages and {items} items so far (as of the nodes' last"
            " heartbeats; the stats are written when the run ends)"
        )
    else:
        head += f"{state}, no stats (they are written when a run ends)"
    lines = [
        head,
        f"started     {_when(run.get('started_at'))}",
        f"finished    {_when(run.get('finished_at'))}",
    ]
    if nodes:
        lines += _node_lines(nodes, now)
    if stats:
        rate = stats.get("pages_per_s")
        lines += [
            f"duration    {_duration(run)}",
            f"pages       {stats.get('pages', 0)}"
            + (f" ({float(rate):.1f}/s)" if isinstance(rate, int | float) else ""),
            f"by status   {_counts(stats.get('by_status'))}",
            f"items       {stats.get('items', 0)}",
            f"errors      {stats.get('errors', 0)}"
            + (f" ({_counts(kinds)})" if (kinds := stats.get("errors_by_kind")) else ""),
            f"bytes       {_size(stats.get('bytes'))}",
            f"per host    {_counts(stats.get('per_host'))}",
        ]
        if changes := stats.get("item_changes"):  # a spider with item_key (docs/changes.md)
            lines.append(
                f"changes     {changes.get('new', 0)} new, {changes.get('changed', 0)} changed,"
                f" {changes.get('removed', 0)} removed"
            )
        if fill := stats.get("field_fill"):
            lines.append(f"fill        {', '.join(f'{k} {v:.0%}' for k, v in fill.items())}")
        lines += _host_lines(stats.get("hosts"))
    return "\n".join(lines)


def _host_lines(hosts: object) -> list[str]:
    """One line per host with a ``host_settings`` rule or held down by autothrottle."""
    if not isinstance(hosts, Mapping):
        return []
    out = []
    for host, h in hosts.items():
        if not isinstance(h, Mapping):
            continue
        out.append(
            f"host        {host}: per_host {h.get('per_host')}, delay {h.get('delay')}s,"
            f" autothrottle {h.get('limit')}, at most {h.get('max_in_flight')} in flight"
        )
    return out
