"""Several nodes on one run: the ``nodes`` table and host leases (issue 10).

How this works. A node joins the live run of its spider (a ``runs`` row with a node whose
heartbeat is fresh) or starts one; joining is serialized by a transaction-level advisory lock,
so two nodes starting together make one run. The node that starts a run first puts back what
earlier runs left in flight and seeds the start URLs (its state is ``seeding`` meanwhile, so
no other node takes the empty frontier for a finished crawl).

A host belongs to one node at a time: a ``host_leases`` row per (run, host) with its
``owner``, ``expires_at`` (server clock), ``epoch`` (one more at each claim) and the owner's
politeness clock (``next_fetch_at``, ``crawl_delay``), which the next owner starts from.
Claims take free rows ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait on each
other nor get the same host. A lease whose owner stopped renewing is freed by any node
(:meth:`ClusterMixin.reap`) only ``grace`` seconds after it expired, a grace longer than any
request may last, so the old owner's last requests are over before a new owner starts; the
reap puts that host's in-flight rows back in the queue and bumps the epoch.

Fencing: ``take`` only hands out rows of a host this node holds (checked in the same
statement) and stamps them with the node and the lease's epoch; ``record`` refuses an
outcome whose row is no longer in flight under this node and the host's current epoch
(``results.py``): a paused node's late answers are dropped, the URL stays with the new owner.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from typing import Any

from crawler.errors import LockedError
from crawler.store.postgres.connection import Connection
from crawler.store.postgres.schema import RUN_LOCK
from crawler.store.schema import to_json

NOW = "extract(epoch FROM clock_timestamp())"  # the server's clock: every node agrees on it
LIVE = ("seeding", "running")
# Counters summed over the nodes when the last one ends the run.
_SUMMED = {"pages", "items", "errors", "bytes", "robots_fetched", "dead_workers", "skipped_urls"}


class ClusterMixin(Connection):
    """The ``nodes`` and ``host_leases`` tables."""

    def join_run(
        self, spider: str, settings: dict[str, Any] | None, *, stale_after: float
    ) -> tuple[int, int, bool, float]:
        """Join the live run of ``spider`` or start one:
        ``(run_id, node_id, started, started_at)``.

        Raises :class:`LockedError` (exit 75) when a live run of another spider holds the
        database: the frontier is the database's, not a run's."""
        pid, host = os.getpid(), socket.gethostname()
        with self._tx("join a run in") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (RUN_LOCK,))
            self._bury_local(conn, host, pid, stale_after)
            live = conn.execute(
                "SELECT r.id, r.spider, r.started_at, n.pid FROM runs r"
                " JOIN nodes n ON n.run_id = r.id WHERE r.finished_at IS NULL"
                f" AND n.state = ANY(%s) AND n.heartbeat_at > {NOW} - %s"
                " ORDER BY r.id DESC, n.id LIMIT 1",
                (list(LIVE), stale_after),
            ).fetchone()
            node = None
            if live is not None and live[1] != spider:
                error = LockedError(self.path, int(live[3]), float(live[2]))
            else:
                error = None
                if live is not None:
                    run_id, started_at, started = int(live[0]), float(live[2]), False
                else:
                    # No live node: whatever is in flight was left by dead ones.
                    conn.execute(
                        "UPDATE frontier SET state = 'queued', node = NULL, epoch = NULL"
                        " WHERE state = 'in_flight'"
                    )
                    conn.execute("DELETE FROM host_leases")
                    row = conn.execute(
                        "INSERT INTO runs (spider, started_at, settings, pid, hostname)"
                        f" VALUES (%s, {NOW}, %s, %s, %s) RETURNING id, started_at",
                        (spider, to_json(settings), pid, host),
                    ).fetchone()
                    assert row is not None
                    run_id, started_at, started = int(row[0]), float(row[1]), True
                node = conn.execute(
                    "INSERT INTO nodes (run_id, hostname, pid, started, heartbeat_at, state)"
                    f" VALUES (%s, %s, %s, {NOW}, {NOW}, %s) RETURNING id",
                    (run_id, host, pid, "seeding" if started else "running"),
                ).fetchone()
                assert node is not None
        if error is not None:
            self.close()
            raise error
        assert node is not None
        self.node_id, self.joined_run = int(node[0]), run_id
        self.recount()
        return run_id, self.node_id, started, started_at

    def _bury_local(self, conn: Any, host: str, pid: int, stale_after: float) -> None:
        """Nodes on this machine whose process is gone are dead now, not after their leases
        time out: a cron restart after a kill -9 resumes at once. (Their workers exit with
        their parent.) Their leases are made expired past any grace, for the reap."""
        rows = conn.execute(
            f"SELECT id, pid FROM nodes WHERE hostname = %s AND state = ANY(%s)"
            f" AND heartbeat_at > {NOW} - %s AND pid <> %s",
            (host, list(LIVE), stale_after, pid),
        ).fetchall()
        dead = [int(node) for node, other in rows if not _alive(int(other))]
        if dead:
            conn.execute("UPDATE nodes SET state = 'dead' WHERE id = ANY(%s)", (dead,))
            conn.execute(
                f"UPDATE host_leases SET expires_at = {NOW} - %s WHERE owner = ANY(%s)",
                (stale_after, dead),
            )

    def seeded(self) -> None:
        """This node finished seeding its run."""
        with self._tx("update the node in") as conn:
            conn.execute("UPDATE nodes SET state = 'running' WHERE id = %s", (self.node_id,))

    def heartbeat(self, pages: int, items: int, stale_after: float) -> tuple[int, int, int, bool]:
        """Say this node lives and what it did; ``(pages, items)`` of the whole run, the live
        nodes (this one included) and whether the run has ended."""
        with self._tx("heartbeat in") as conn:
            conn.execute(
                f"UPDATE nodes SET heartbeat_at = {NOW}, pages = %s, items = %s,"
                " state = CASE WHEN state = 'dead' THEN 'running' ELSE state END WHERE id = %s",
                (pages, items, self.node_id),
            )
            row = conn.execute(
                "SELECT coalesce(sum(pages), 0), coalesce(sum(items), 0), count(*) FILTER"
                f" (WHERE state = ANY(%s) AND heartbeat_at > {NOW} - %s),"
                " bool_or(EXISTS (SELECT 1 FROM runs WHERE id = %s AND finished_at IS NOT NULL))"
                " FROM nodes WHERE run_id = %s",
                (list(LIVE), stale_after, self.joined_run, self.joined_run),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), bool(row[3])

    def claim(
        self, hosts: Sequence[str], limit: int, ttl: float
    ) -> list[tuple[str, int, float, float | None]]:
        """Claim up to ``limit`` free leases among ``hosts`` for ``ttl`` seconds:
        ``(host, epoch, next_fetch_at, crawl_delay)`` of each one claimed."""
        if limit <= 0 or not hosts:
            return []
        with self._tx("claim hosts in") as conn:
            conn.execute(
                "INSERT INTO host_leases (run_id, host) SELECT %s, unnest(%s::text[])"
                " ON CONFLICT DO NOTHING",
                (self.joined_run, list(hosts)),
            )
            rows = conn.execute(
                f"UPDATE host_leases l SET owner = %s, epoch = l.epoch + 1, expires_at = {NOW} + %s"
                " FROM (SELECT host FROM host_leases WHERE run_id = %s AND host = ANY(%s)"
                " AND owner IS NULL LIMIT %s FOR UPDATE SKIP LOCKED) c"
                " WHERE l.run_id = %s AND l.host = c.host"
                " RETURNING l.host, l.epoch, l.next_fetch_at, l.crawl_delay",
                (self.node_id, ttl, self.joined_run, list(hosts), limit, self.joined_run),
            ).fetchall()
        return [(str(h), int(e), float(n), None if d is None else float(d)) for h, e, n, d in rows]

    def renew(self, leases: Sequence[tuple[str, int, float, float]], ttl: float) -> set[str]:
        """Extend this node's leases ``(host, epoch, next_fetch_at, crawl_delay)`` by
        ``ttl`` seconds, keeping the clocks; the hosts still held (the others were lost)."""
        if not leases:
            return set()
        hosts, epochs, nexts, delays = (list(c) for c in zip(*leases, strict=True))
        with self._tx("renew leases in") as conn:
            rows = conn.execute(
                f"UPDATE host_leases l SET expires_at = {NOW} + %s, next_fetch_at = v.n,"
                " crawl_delay = v.d FROM unnest(%s::text[], %s::bigint[], %s::float8[],"
                " %s::float8[]) AS v(h, e, n, d) WHERE l.run_id = %s AND l.host = v.h"
                " AND l.owner = %s AND l.epoch = v.e RETURNING l.host",
                (ttl, hosts, epochs, nexts, delays, self.joined_run, self.node_id),
            ).fetchall()
        return {str(row[0]) for row in rows}

    def release(self, leases: Sequence[tuple[str, int, float, float]]) -> None:
        """Give up these leases (nothing of theirs is in flight), keeping the clocks."""
        if not leases:
            return
        hosts, epochs, nexts, delays = (list(c) for c in zip(*leases, strict=True))
        with self._tx("release leases in") as conn:
            conn.execute(
                "UPDATE host_leases l SET owner = NULL, expires_at = 0, next_fetch_at = v.n,"
                " crawl_delay = v.d FROM unnest(%s::text[], %s::bigint[], %s::float8[],"
                " %s::float8[]) AS v(h, e, n, d) WHERE l.run_id = %s AND l.host = v.h"
                " AND l.owner = %s AND l.epoch = v.e",
                (hosts, epochs, nexts, delays, self.joined_run, self.node_id),
            )

    def reap(self, grace: float) -> int:
        """Free the leases that expired more than ``grace`` seconds ago (their owner is dead
        or paused) and put their hosts' in-flight rows back in the queue; how many rows."""
        with self._tx("take over leases in") as conn:
            hosts = [
                str(row[0])
                for row in conn.execute(
                    "SELECT host FROM host_leases WHERE run_id = %s AND owner IS NOT NULL"
                    f" AND expires_at < {NOW} - %s FOR UPDATE SKIP LOCKED",
                    (self.joined_run, grace),
                )
            ]
            if not hosts:
                return 0
            owners = conn.execute(
                "UPDATE host_leases l SET owner = NULL, epoch = l.epoch + 1"
                " FROM host_leases old WHERE l.run_id = %s AND l.host = ANY(%s)"
                " AND old.run_id = l.run_id AND old.host = l.host RETURNING old.owner",
                (self.joined_run, hosts),
            ).fetchall()
            # Their owner has been silent past the grace: dead (or paused; a heartbeat
            # says it lives again), so the last node to leave may end the run without it.
            conn.execute(
                f"UPDATE nodes SET state = 'dead' WHERE id = ANY(%s) AND state = ANY(%s)"
                f" AND heartbeat_at < {NOW} - %s",
                ([row[0] for row in owners], list(LIVE), grace),
            )
            n = int(
                conn.execute(
                    "UPDATE frontier SET state = 'queued', node = NULL, epoch = NULL"
                    " WHERE state = 'in_flight' AND host = ANY(%s)",
                    (hosts,),
                ).rowcount
            )
        if n:
            self.recount()  # another node's rows: our own counts cannot say how many (rare)
        return n

    def reconnect_count(self) -> int:
        return self.reconnects

    def requeue_lost_takes(self, known: Sequence[int]) -> int:
        """Put back in the queue this node's in-flight rows it does not know of (``known``:
        the fingerprints its engine has in flight); how many.

        They come from a ``take`` whose answer the lost connection swallowed: the server
        committed it, the repeated call took other rows, and nobody would ever answer these
        (this node heartbeats, so no takeover frees them), leaving the run in flight for
        ever. The node calls this after each reconnect."""
        with self._tx("requeue lost takes in") as conn:
            n = int(
                conn.execute(
                    "UPDATE frontier SET state = 'queued', node = NULL, epoch = NULL"
                    " WHERE state = 'in_flight' AND node = %s AND fp <> ALL(%s)",
                    (self.node_id, list(known)),
                ).rowcount
            )
        if n:
            self.recount()
        return n

    def robots_of(self, hosts: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """The stored robots.txt policies of ``hosts`` (a node taking hosts over)."""
        from crawler.store.schema import ROBOTS_COLUMNS

        with self._read("read robots.txt policies from"):
            rows = self.conn.execute(
                f"SELECT host, {', '.join(ROBOTS_COLUMNS)} FROM robots WHERE host = ANY(%s)",
                (list(hosts),),
            ).fetchall()
        return [(row[0], dict(zip(ROBOTS_COLUMNS, row[1:], strict=True))) for row in rows]

    def busy_elsewhere(self, stale_after: float) -> bool:
        """Whether any URL is in flight (on any node) or a live node is still seeding."""
        with self._read("read the queue of"):
            row = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM frontier WHERE state = 'in_flight')"
                " OR EXISTS (SELECT 1 FROM nodes WHERE run_id = %s AND state = 'seeding'"
                f" AND heartbeat_at > {NOW} - %s)",
                (self.joined_run, stale_after),
            ).fetchone()
        return bool(row and row[0])

    def leave(
        self,
        *,
        exit_code: int,
        finish_reason: str,
        stats: dict[str, Any],
        stale_after: float,
    ) -> bool:
        """This node is done: free its leases, end its row, and end the run when no other
        node is live (with every node's counters summed); whether it ended the run."""
        with self._tx("leave a run in") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (RUN_LOCK,))
            # A node of this machine killed while it held no lease is never reaped as dead,
            # and its last heartbeat would count as live: the run would stay open.
            self._bury_local(conn, socket.gethostname(), os.getpid(), stale_after)
            conn.execute(
                "UPDATE host_leases SET owner = NULL, expires_at = 0"
                " WHERE run_id = %s AND owner = %s",
                (self.joined_run, self.node_id),
            )
            conn.execute(
                f"UPDATE nodes SET state = 'done', heartbeat_at = {NOW}, exit_code = %s,"
                " stats = %s, pages = %s, items = %s WHERE id = %s",
                (
                    exit_code, to_json(stats), int(stats.get("pages", 0)),
                    int(stats.get("items", 0)), self.node_id,
                ),
            )  # fmt: skip
            row = conn.execute(
                "SELECT count(*) FROM nodes WHERE run_id = %s AND id <> %s"
                f" AND state = ANY(%s) AND heartbeat_at > {NOW} - %s",
                (self.joined_run, self.node_id, list(LIVE), stale_after),
            ).fetchone()
            if row is not None and row[0]:
                return False
            merged = dict(stats)
            all_stats = [
                json.loads(s)
                for (s,) in conn.execute(
                    "SELECT stats FROM nodes WHERE run_id = %s AND stats IS NOT NULL",
                    (self.joined_run,),
                )
            ]
            for key, value in stats.items():
                if key in _SUMMED:
                    merged[key] = sum(s.get(key, 0) for s in all_stats)
                elif isinstance(value, dict) and all(
                    isinstance(v, int) for v in value.values()
                ):  # counts by status, by callback...
                    total: dict[str, int] = {}
                    for s in all_stats:
                        for k, v in (s.get(key) or {}).items():
                            if isinstance(v, int):
                                total[k] = total.get(k, 0) + v
                    merged[key] = total
            row = conn.execute(
                f"SELECT {NOW} - started_at FROM runs WHERE id = %s", (self.joined_run,)
            ).fetchone()
            if row is not None:
                merged["elapsed"] = round(float(row[0]), 3)
                merged["pages_per_s"] = round(merged.get("pages", 0) / max(1e-9, row[0]), 2)
            merged["nodes"] = len(all_stats)
            conn.execute(
                f"UPDATE runs SET finished_at = {NOW}, exit_code = %s, finish_reason = %s,"
                " stats = %s WHERE id = %s",
                (exit_code, finish_reason, to_json(merged), self.joined_run),
            )
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
