"""Runs and robots.txt policies: the rows that outlive one crawl's frontier.

A ``runs`` row is written when a run starts (with our pid and host name) and finished when it
ends; one whose ``finished_at`` stays NULL was killed. ``robots`` keeps one robots.txt policy
per host key as plain fields, so a later run within the policy's expiry does not fetch it
again. ``fresh`` empties the crawl but keeps the runs.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from typing import Any

from crawler.store.connection import Connection
from crawler.store.schema import HOST_STATE_COLUMNS, ROBOTS_COLUMNS, to_json

_COOKIE_COLUMNS = ("session", "domain", "path", "name", "value", "expires", "secure")


class RunsMixin(Connection):
    """The ``runs`` and ``robots`` tables (cold paths: a few rows per run, so sqlite-utils)."""

    # --- robots.txt -----------------------------------------------------------------------

    def put_robots(self, host: str, policy: dict[str, Any]) -> None:
        """Keep one host's robots.txt policy (the fields of ``RobotsPolicy``, as plain data)."""
        row = {"host": host, **{name: policy.get(name) for name in ROBOTS_COLUMNS}}
        with self._tx("store robots.txt in"):
            self.db.table("robots").upsert(row, pk="host")

    def robots_policies(self, since: float) -> list[tuple[str, dict[str, Any]]]:
        """``(host, fields)`` of every stored policy fetched at or after ``since``."""
        rows = self.db.table("robots").rows_where(
            "fetched_at >= ?", [since], select=", ".join(("host", *ROBOTS_COLUMNS))
        )
        return [(row.pop("host"), row) for row in rows]

    # --- what autothrottle learned per host ----------------------------------------------

    def host_states(self) -> dict[str, dict[str, Any]]:
        """Every stored ``host_state`` row, keyed by host."""
        rows = self.db.table("host_state").rows_where(
            select=", ".join(("host", *HOST_STATE_COLUMNS))
        )
        return {row.pop("host"): row for row in rows}

    def put_host_states(self, states: dict[str, dict[str, Any]]) -> None:
        """Keep each host's learned state (keys ``HOST_STATE_COLUMNS``), replacing the old."""
        rows = [
            {"host": host, **{name: state.get(name) for name in HOST_STATE_COLUMNS}}
            for host, state in states.items()
        ]
        if rows:
            with self._tx("store host state in"):
                self.db.table("host_state").upsert_all(rows, pk="host")

    # --- cookies --------------------------------------------------------------------------

    def cookies(self) -> list[dict[str, Any]]:
        """Every stored cookie as a ``crawler.cookies`` row."""
        out = []
        for row in self.db.table("cookies").rows:
            attrs = json.loads(row.pop("attrs") or "{}")
            out.append({**attrs, **row})
        return out

    def put_cookies(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace the stored cookies (a jar is small: a few dozen rows)."""
        table_rows = []
        for row in rows:
            attrs = {k: v for k, v in row.items() if k not in _COOKIE_COLUMNS}
            table_rows.append(
                {**{k: row.get(k) for k in _COOKIE_COLUMNS}, "attrs": json.dumps(attrs)}
            )
        with self._tx("store cookies in"):
            self.db.execute("DELETE FROM cookies")
            if table_rows:
                self.db.table("cookies").insert_all(table_rows)

    # --- runs -----------------------------------------------------------------------------

    def begin_run(self, spider: str, settings: dict[str, Any] | None = None) -> int:
        """Insert a ``runs`` row (with our pid and host name) and return its id.

        A row whose ``finished_at`` stays NULL belongs to a run that was killed (or is still
        going: the caller holds the run lock while its row is open).
        """
        row = {
            "spider": spider,
            "started_at": self._clock(),
            "settings": to_json(settings),
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
        }
        with self._tx("start a run in"):
            run_id = self.db.table("runs").insert(row).last_pk
        assert isinstance(run_id, int)
        return run_id

    def end_run(
        self,
        run_id: int,
        *,
        exit_code: int,
        finish_reason: str,
        stats: dict[str, Any] | None = None,
    ) -> None:
        row = {
            "finished_at": self._clock(),
            "exit_code": exit_code,
            "finish_reason": finish_reason,
            "stats": to_json(stats or {}) or "{}",
        }
        with self._tx("finish a run in"):
            self.db.table("runs").update(run_id, row)

    def runs(self, spider: str | None = None) -> list[dict[str, Any]]:
        """Runs, oldest first, with ``stats`` and ``settings`` decoded."""
        where, args = ("spider = ?", [spider]) if spider is not None else (None, None)
        out = []
        for row in self.db.table("runs").rows_where(where, args, order_by="id"):
            for key in ("stats", "settings"):
                if row.get(key):
                    row[key] = json.loads(row[key])
            out.append(row)
        return out

    def last_run(self, spider: str | None = None) -> dict[str, Any] | None:
        runs = self.runs(spider)
        return runs[-1] if runs else None

    def recent_stats(self, spider: str, before_run: int, n: int) -> list[dict[str, Any]]:
        """The stats of ``spider``'s last ``n`` runs before ``before_run`` that finished
        cleanly (exit 0), oldest first: a run stopped by a limit saw only part of the site, and
        one that failed a gate must not become the new normal."""
        rows = self.conn.execute(
            "SELECT stats FROM runs WHERE spider = ? AND id < ? AND finished_at IS NOT NULL"
            " AND exit_code = 0 AND stats IS NOT NULL ORDER BY id DESC LIMIT ?",
            (spider, before_run, n),
        ).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]

    def run_item_count(self, run_id: int) -> int:
        """Items on the pages run ``run_id`` fetched: parsed, or kept on an unchanged page."""
        row = self.conn.execute(
            "SELECT count(*) FROM items JOIN pages ON pages.url = items.page_url"
            " WHERE pages.run_id = ?",
            (run_id,),
        ).fetchone()
        return int(row[0])

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
