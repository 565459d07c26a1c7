"""Runs and robots.txt policies on PostgreSQL: the SQLite rules (``crawler/store/runs.py``)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from crawler.store.postgres.connection import Connection
from crawler.store.schema import ROBOTS_COLUMNS, to_json

_COLUMNS = ", ".join(ROBOTS_COLUMNS)
_PUT_ROBOTS = (
    f"INSERT INTO robots (host, {_COLUMNS}) VALUES (%s{', %s' * len(ROBOTS_COLUMNS)})"
    " ON CONFLICT (host) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in ROBOTS_COLUMNS)
)


class RunsMixin(Connection):
    """The ``runs`` and ``robots`` tables."""

    def put_robots(self, host: str, policy: dict[str, Any]) -> None:
        with self._tx("store robots.txt in") as conn:
            conn.execute(_PUT_ROBOTS, [host, *(policy.get(name) for name in ROBOTS_COLUMNS)])

    def robots_policies(self, since: float) -> list[tuple[str, dict[str, Any]]]:
        with self._read("read robots.txt policies from"):
            rows = self.conn.execute(
                f"SELECT host, {_COLUMNS} FROM robots WHERE fetched_at >= %s", (since,)
            ).fetchall()
        return [(row[0], dict(zip(ROBOTS_COLUMNS, row[1:], strict=True))) for row in rows]

    def begin_run(self, spider: str, settings: dict[str, Any] | None = None) -> int:
        with self._tx("start a run in") as conn:
            row = conn.execute(
                "INSERT INTO runs (spider, started_at, settings, pid, hostname)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (spider, self._clock(), to_json(settings), os.getpid(), socket.gethostname()),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def end_run(
        self,
        run_id: int,
        *,
        exit_code: int,
        finish_reason: str,
        stats: dict[str, Any] | None = None,
    ) -> None:
        with self._tx("finish a run in") as conn:
            conn.execute(
                "UPDATE runs SET finished_at = %s, exit_code = %s, finish_reason = %s,"
                " stats = %s WHERE id = %s",
                (self._clock(), exit_code, finish_reason, to_json(stats or {}) or "{}", run_id),
            )

    def runs(self, spider: str | None = None) -> list[dict[str, Any]]:
        """Runs, oldest first, with ``stats`` and ``settings`` decoded."""
        where, args = ("WHERE spider = %s", [spider]) if spider is not None else ("", [])
        with self._read("read the runs of"):
            cur = self.conn.execute(f"SELECT * FROM runs {where} ORDER BY id", args)
            names = [d.name for d in cur.description or ()]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        for row in rows:
            for key in ("stats", "settings"):
                if row.get(key):
                    row[key] = json.loads(row[key])
        return rows

    def last_run(self, spider: str | None = None) -> dict[str, Any] | None:
        runs = self.runs(spider)
        return runs[-1] if runs else None

    def run_url_errors(self, run_id: int) -> tuple[int, int]:
        with self._read("count the errors of a run in"):
            row = self.conn.execute(
                "SELECT count(*), coalesce(sum(bad), 0) FROM (SELECT url, max(bad) AS bad FROM ("
                " SELECT url, 0 AS bad FROM pages WHERE run_id = %s"
                " UNION ALL SELECT url, 1 FROM errors WHERE run_id = %s AND kind <> 'robots')"
                " AS handled GROUP BY url) AS urls",
                (run_id, run_id),
            ).fetchone()
        assert row is not None
        return int(row[1]), int(row[0])
