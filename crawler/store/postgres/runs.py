"""Runs, robots.txt policies, autothrottle's host state and cookies on PostgreSQL: the SQLite
rules (``crawler/store/runs.py``), on the same tables and columns."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from typing import Any

from crawler.store.postgres.connection import Connection
from crawler.store.schema import HOST_STATE_COLUMNS, ROBOTS_COLUMNS, to_json

_COLUMNS = ", ".join(ROBOTS_COLUMNS)
_PUT_ROBOTS = (
    f"INSERT INTO robots (host, {_COLUMNS}) VALUES (%s{', %s' * len(ROBOTS_COLUMNS)})"
    " ON CONFLICT (host) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in ROBOTS_COLUMNS)
)

_HOST_COLUMNS = ", ".join(HOST_STATE_COLUMNS)
_PUT_HOST_STATE = (
    f"INSERT INTO host_state (host, {_HOST_COLUMNS})"
    f" VALUES (%s{', %s' * len(HOST_STATE_COLUMNS)}) ON CONFLICT (host) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in HOST_STATE_COLUMNS)
)
# The cookies columns besides ``attrs`` (the JSON of every other field of a row), as in SQLite.
_COOKIE_COLUMNS = ("session", "domain", "path", "name", "value", "expires", "secure")


class RunsMixin(Connection):
    """The ``runs``, ``robots``, ``host_state`` and ``cookies`` tables."""

    def put_robots(self, host: str, policy: dict[str, Any]) -> None:
        with self._tx("store robots.txt in") as conn:
            conn.execute(_PUT_ROBOTS, [host, *(policy.get(name) for name in ROBOTS_COLUMNS)])

    def robots_policies(self, since: float) -> list[tuple[str, dict[str, Any]]]:
        with self._read("read robots.txt policies from"):
            rows = self.conn.execute(
                f"SELECT host, {_COLUMNS} FROM robots WHERE fetched_at >= %s", (since,)
            ).fetchall()
        return [(row[0], dict(zip(ROBOTS_COLUMNS, row[1:], strict=True))) for row in rows]

    def host_states(self) -> dict[str, dict[str, Any]]:
        with self._read("read host state from"):
            rows = self.conn.execute(f"SELECT host, {_HOST_COLUMNS} FROM host_state").fetchall()
        return {row[0]: dict(zip(HOST_STATE_COLUMNS, row[1:], strict=True)) for row in rows}

    def put_host_states(self, states: dict[str, dict[str, Any]]) -> None:
        rows = [
            [host, *(state.get(name) for name in HOST_STATE_COLUMNS)]
            for host, state in states.items()
        ]
        if rows:
            with self._tx("store host state in") as conn, conn.cursor() as cur:
                cur.executemany(_PUT_HOST_STATE, rows)

    def cookies(self) -> list[dict[str, Any]]:
        with self._read("read cookies from"):
            rows = self.conn.execute(
                f"SELECT {', '.join(_COOKIE_COLUMNS)}, attrs FROM cookies"
            ).fetchall()
        out = []
        for row in rows:
            attrs = json.loads(row[-1] or "{}")
            out.append({**attrs, **dict(zip(_COOKIE_COLUMNS, row[:-1], strict=True))})
        return out

    def put_cookies(self, rows: Iterable[dict[str, Any]]) -> None:
        values = []
        for row in rows:
            attrs = {k: v for k, v in row.items() if k not in _COOKIE_COLUMNS}
            secure = row.get("secure")
            # http.cookiejar's flag is a bool; the column is an integer, as in SQLite.
            kept = {**row, "secure": None if secure is None else int(secure)}
            values.append([*(kept.get(k) for k in _COOKIE_COLUMNS), json.dumps(attrs)])
        with self._tx("store cookies in") as conn:
            conn.execute("DELETE FROM cookies")
            if values:
                with conn.cursor() as cur:
                    # A jar holds one cookie per key; should rows repeat one, the last wins
                    # (as a jar's set_cookie would) instead of failing the whole write.
                    cur.executemany(
                        f"INSERT INTO cookies ({', '.join(_COOKIE_COLUMNS)}, attrs)"
                        f" VALUES ({', '.join(['%s'] * (len(_COOKIE_COLUMNS) + 1))})"
                        " ON CONFLICT (session, domain, path, name) DO UPDATE SET"
                        " value = excluded.value, expires = excluded.expires,"
                        " secure = excluded.secure, attrs = excluded.attrs",
                        values,
                    )

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

    def recent_stats(self, spider: str, before_run: int, n: int) -> list[dict[str, Any]]:
        with self._read("read the recent runs of"):
            rows = self.conn.execute(
                "SELECT stats FROM runs WHERE spider = %s AND id < %s AND finished_at IS NOT NULL"
                " AND exit_code = 0 AND stats IS NOT NULL ORDER BY id DESC LIMIT %s",
                (spider, before_run, n),
            ).fetchall()
        return [json.loads(row[0]) for row in reversed(rows)]

    def run_item_count(self, run_id: int) -> int:
        with self._read("count the items of a run in"):
            row = self.conn.execute(
                "SELECT count(*) FROM items JOIN pages ON pages.url = items.page_url"
                " WHERE pages.run_id = %s",
                (run_id,),
            ).fetchone()
        assert row is not None
        return int(row[0])

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
