"""Frontier operations on PostgreSQL: the SQLite rules (``crawler/store/frontier.py``), in as
few round trips as the rules allow.

New rows go in one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT (fp) DO NOTHING``
per batch, deduplicated by ``fp`` in Python first (sending a duplicate is wasted bytes).
``seq`` comes from the table's sequence, so insertion order is shared by every node. ``take``
is one ``UPDATE ... WHERE fp IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: two
connections taking from the same host get disjoint rows, never the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crawler.messages import Follow, Job, NewRequest
from crawler.store.postgres.connection import Connection
from crawler.store.schema import job_from_row, to_json

# New rows go in as one array per column (``unnest``): one statement text whatever the batch
# size, so psycopg parses and the server plans it once. A multi-row VALUES list with a
# placeholder per value was measured 4x slower here, nearly all of it in psycopg splitting the
# ever-different query text.
_REQUEST_COLUMNS = {
    "fp": "bigint", "url": "text", "host": "text", "method": "text", "headers": "text",
    "body": "bytea", "callback": "text", "meta": "text", "depth": "bigint", "priority": "bigint",
    "redirect_urls": "text", "discovered_at": "float8", "updated_at": "float8",
}  # fmt: skip
_FOLLOW_COLUMNS = {
    "fp": "bigint", "url": "text", "host": "text", "depth": "bigint",
    "discovered_at": "float8", "updated_at": "float8",
}  # fmt: skip


def _insert_sql(columns: dict[str, str]) -> str:
    arrays = ", ".join(f"%b::{kind}[]" for kind in columns.values())  # %b: binary, no escaping
    # seq follows the batch's order (nextval runs after the inner sort); the rows go in by
    # fp, so nodes inserting the same new links lock their keys in one order: no deadlock.
    names = ", ".join(columns)
    return (
        f"INSERT INTO frontier ({names}, seq) SELECT {names}, s FROM ("
        f" SELECT {names}, nextval('frontier_seq') AS s FROM unnest({arrays})"
        f" WITH ORDINALITY AS batch({names}, n) ORDER BY n) AS b ORDER BY fp"
        " ON CONFLICT (fp) DO NOTHING"
    )


_INSERT_SQL = {id(c): _insert_sql(c) for c in (_REQUEST_COLUMNS, _FOLLOW_COLUMNS)}
# Links found on pages, the bulk of every batch (a hundred per page, most already known): three
# values vary per row, so they travel as three strings split on the server, which costs the
# client a join instead of a per-element array encoding (half the engine's CPU, measured).
_INSERT_FOLLOWS = (
    "INSERT INTO frontier (fp, url, host, depth, discovered_at, updated_at, seq)"
    " SELECT f, u, h, d, %s, %s, s FROM (SELECT f::bigint AS f, u, h, d::bigint AS d,"
    " nextval('frontier_seq') AS s FROM unnest(string_to_array(%s, ','),"
    " string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n'), string_to_array(%s, ','))"
    " WITH ORDINALITY AS batch(f, u, h, d, n) ORDER BY n) AS b ORDER BY f"
    " ON CONFLICT (fp) DO NOTHING"
)
# Every host of a dispatch round in one statement: per host (a LATERAL probe of its index), its
# best ``n`` ready rows, locked ``FOR UPDATE SKIP LOCKED`` so two connections taking from one
# host get disjoint rows. One statement for the round, not one per host: a round trip each is
# what a node's round cost (measured: 3.3 hosts a round at 16 hosts).
_PICK = (
    " SELECT c.fp FROM unnest(%s::text[], %s::bigint[]) AS w(host, n) CROSS JOIN LATERAL ("
    " SELECT fp FROM frontier WHERE state = 'queued' AND host = w.host AND not_before <= %s"
    " ORDER BY priority DESC, seq LIMIT w.n FOR UPDATE SKIP LOCKED) c"
)
_TAKEN = (
    " RETURNING frontier.host, fp, url, method, headers, frontier.body, callback, meta, depth,"
    " attempts, redirect_urls, etag, last_modified, content_hash, priority, seq"
)
_TAKE = (
    "UPDATE frontier SET state = 'in_flight', updated_at = %s WHERE fp IN (" + _PICK + ")" + _TAKEN
)
# A node takes only from hosts it holds a live lease on (checked in the same statement), and
# stamps each row with itself and the lease's epoch (fencing: cluster.py, results.py).
_TAKE_LEASED = (
    "UPDATE frontier SET state = 'in_flight', updated_at = %s, node = l.owner, epoch = l.epoch"
    " FROM host_leases l WHERE l.run_id = %s AND l.host = frontier.host AND l.owner = %s"
    " AND l.expires_at > extract(epoch FROM clock_timestamp()) AND frontier.fp IN ("
    + _PICK
    + ")"
    + _TAKEN
)
# A skip-scan over the queued hosts, then one probe per host for an entry that is ready. The
# probe is a scalar subquery with LIMIT 1, not EXISTS: the planner turns EXISTS into a hash
# semi-join that reads every ready queued row of the run on each call (0.6-0.9 ms a call
# mid-crawl with 16 hosts, the largest server cost of a node's round); a scalar subquery stays
# a per-host index probe that stops at the first ready entry.
_QUEUED_HOSTS = """
WITH RECURSIVE h(host) AS (
    SELECT (SELECT min(host) FROM frontier WHERE state = 'queued' AND host > %s)
    UNION ALL
    SELECT (SELECT min(host) FROM frontier WHERE state = 'queued' AND host > h.host)
    FROM h WHERE h.host IS NOT NULL
)
SELECT host FROM h WHERE host IS NOT NULL AND (
    SELECT true FROM frontier WHERE state = 'queued' AND host = h.host AND not_before <= %s
    LIMIT 1
) LIMIT %s
"""
# The same probe for given hosts only (a node's own).
_HOSTS_AMONG = """
SELECT h FROM unnest(%s::text[]) AS given(h) WHERE (
    SELECT true FROM frontier WHERE state = 'queued' AND host = given.h AND not_before <= %s
    LIMIT 1
)
"""
_REQUEUE_AGAIN = (
    "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0, updated_at = %s"
)


def insert_new(conn: Any, columns: dict[str, str], rows: Sequence[tuple[Any, ...]]) -> Any:
    """Insert ``rows`` (first value: ``fp``) whose ``fp`` is new; the cursor, whose
    :func:`changed` says how many were."""
    if not rows:
        return None
    arrays = [list(column) for column in zip(*rows, strict=True)]
    return conn.execute(_INSERT_SQL[id(columns)], arrays)


def changed(cur: Any) -> int:
    """The rows a statement changed (none: ``None``). In a pipelined transaction, known only
    once it has committed (``Connection._pipelined_tx``)."""
    return 0 if cur is None else int(max(cur.rowcount, 0))


def _unique(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    seen: dict[Any, tuple[Any, ...]] = {}
    for row in rows:
        seen.setdefault(row[0], row)  # the first of a batch wins, as INSERT OR IGNORE would
    return list(seen.values())


class FrontierMixin(Connection):
    """The ``frontier`` table's operations."""

    def add(self, requests: Iterable[NewRequest]) -> int:
        requests = list(requests)
        with self._tx("add requests to") as conn:
            added = self._add_in_tx(conn, requests)
        new = self._added(*added)
        self._counts["queued"] += new
        return new

    def _added(self, inserted: Any, requeued: Any) -> int:
        """Count what an ``_add_in_tx`` changed, once its transaction has committed; the new
        rows."""
        again = changed(requeued)
        self._counts["done"] -= again
        self._counts["queued"] += again
        return changed(inserted)

    def _add_in_tx(self, conn: Any, requests: list[NewRequest]) -> tuple[Any, Any]:
        """Send the inserts of ``requests``; the cursors of the new rows and of the rows a
        sitemap's lastmod put back in the queue, for :meth:`_added`."""
        now = self._clock()
        rows = _unique(
            (
                r.fp, r.url, r.host, r.method, to_json([list(h) for h in r.headers]), r.body,
                r.callback, to_json(r.meta), r.depth, r.priority,
                to_json(list(r.redirect_urls)), now, now,
            )
            for r in requests
        )  # fmt: skip
        inserted = insert_new(conn, _REQUEST_COLUMNS, rows)
        stale = [r for r in requests if r.lastmod is not None]
        requeued = None
        if stale:
            # Recrawl rule 3: a sitemap says the page changed after we last fetched it.
            fps, lastmods = [r.fp for r in stale], [r.lastmod for r in stale]
            requeued = conn.execute(
                _REQUEUE_AGAIN + " FROM unnest(%s::bigint[], %s::float8[]) AS s(fp, lastmod)"
                " WHERE frontier.fp = s.fp AND state = 'done' AND fetched_at < s.lastmod",
                (now, fps, lastmods),
            )
        return inserted, requeued

    def add_follows(self, follows: Iterable[Follow], *, depth: int) -> int:
        now = self._clock()
        with self._tx("add links to") as conn:
            cur = self._add_follows_in_tx(conn, ((*f, depth) for f in follows), now)
        new = changed(cur)
        self._counts["queued"] += new
        return new

    def _add_follows_in_tx(
        self, conn: Any, follows: Iterable[tuple[int, str, str, int]], now: float
    ) -> Any:
        """``(fp, url, host, depth)`` rows, every depth of a batch in one statement (rows
        go in by fp: one lock order for every node); its cursor (see :func:`changed`)."""
        rows = _unique((fp, url, host, depth, now, now) for fp, url, host, depth in follows)
        if not rows:
            return None
        _fps, urls, hosts, depths, *_ = zip(*rows, strict=True)
        url_text, host_text = "\n".join(urls), "\n".join(hosts)
        if url_text.count("\n") != len(rows) - 1 or host_text.count("\n") != len(rows) - 1:
            return insert_new(conn, _FOLLOW_COLUMNS, rows)  # a newline inside a value
        fp_text, depth_text = ",".join(map(str, _fps)), ",".join(map(str, depths))
        return conn.execute(_INSERT_FOLLOWS, (now, now, fp_text, url_text, host_text, depth_text))

    def hosts_with_work(
        self, now: float, *, after: str = "", limit: int | None = None
    ) -> list[str]:
        # The recursion runs only as far as the outer LIMIT reads it (NULL: no limit).
        with self._read("read the queue of"):
            rows = self.conn.execute(_QUEUED_HOSTS, (after, now, limit))
            return [row[0] for row in rows]

    def hosts_with_work_among(self, hosts: Sequence[str], now: float) -> list[str]:
        if not hosts:
            return []
        with self._read("read the queue of"):
            return [row[0] for row in self.conn.execute(_HOSTS_AMONG, (list(hosts), now))]

    def next_not_before(self, now: float | None = None) -> float | None:
        at = self._clock() if now is None else now
        with self._read("read the queue of"):
            row = self.conn.execute(
                "SELECT min(not_before) FROM frontier"
                " WHERE state = 'queued' AND not_before > 0 AND not_before > %s",
                (at,),
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def queued_url(self, host: str) -> str | None:
        with self._read("read the queue of"):
            row = self.conn.execute(
                "SELECT url FROM frontier WHERE state = 'queued' AND host = %s LIMIT 1", (host,)
            ).fetchone()
        return None if row is None else str(row[0])

    def has_queued(self) -> bool:
        with self._read("read the queue of"):
            row = self.conn.execute("SELECT 1 FROM frontier WHERE state = 'queued' LIMIT 1")
            return row.fetchone() is not None

    def take(self, host: str, limit: int, now: float) -> list[Job]:
        return self.take_hosts({host: limit}, now).get(host, [])

    def take_hosts(self, limits: dict[str, int], now: float) -> dict[str, list[Job]]:
        limits = {host: n for host, n in limits.items() if n > 0}
        if not limits:
            return {}
        pick = (list(limits), list(limits.values()), now)
        with self._statement("take work from") as conn:
            if self.node_id is None:
                rows = conn.execute(_TAKE, (now, *pick)).fetchall()
            else:
                args = (now, self.joined_run, self.node_id, *pick)
                rows = conn.execute(_TAKE_LEASED, args).fetchall()
        rows.sort(key=lambda row: (-row[14], row[15]))  # RETURNING has no order
        self._counts["queued"] -= len(rows)
        self._counts["in_flight"] += len(rows)
        jobs: dict[str, list[Job]] = {}
        for row in rows:
            jobs.setdefault(row[0], []).append(job_from_row(row[0], row[1:14]))
        return jobs

    def reset_in_flight(self) -> int:
        """Take the database's run lock, then requeue what a crashed run left in flight.

        Until host leases let several nodes share a run (issue 10), one run at a time owns a
        PostgreSQL crawl database, as with SQLite's ``flock``: here a session-level advisory
        lock, which the server releases when this connection ends, however it ends (a kill -9
        included). A second run raises :class:`LockedError` (exit 75) instead of requeueing
        the first run's in-flight URLs under it."""
        self._take_run_lock()
        with self._tx("reset") as conn:
            n = conn.execute(
                "UPDATE frontier SET state = 'queued' WHERE state = 'in_flight'"
            ).rowcount
        self._counts["in_flight"] -= n
        self._counts["queued"] += n
        return n

    def requeue(self, fps: Iterable[int], *, count_attempt: bool = False) -> int:
        extra = ", attempts = attempts + 1" if count_attempt else ""
        # A node puts back only its own rows: one a takeover requeued may be another's now.
        mine = "" if self.node_id is None else f" AND node = {int(self.node_id)}"
        with self._statement("requeue in") as conn:
            n = conn.execute(
                f"UPDATE frontier SET state = 'queued', node = NULL, epoch = NULL{extra}"
                f" WHERE fp = ANY(%s) AND state = 'in_flight'{mine}",
                (list(fps),),
            ).rowcount
        self._counts["in_flight"] -= n
        self._counts["queued"] += n
        return n

    def give_up(
        self,
        fps: Iterable[int],
        *,
        max_attempts: int,
        kind: str,
        message: str,
        run_id: int | None,
    ) -> list[str]:
        now = self._clock()
        with self._tx("give up on entries in") as conn:
            rows = conn.execute(
                "UPDATE frontier SET state = 'failed', updated_at = %s"
                " WHERE fp = ANY(%s) AND state = 'queued' AND attempts >= %s RETURNING url",
                (now, list(fps), max_attempts),
            ).fetchall()
            failed = [str(row[0]) for row in rows]
            if failed:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO errors (url, kind, message, traceback, run_id, at)"
                        " VALUES (%s, %s, %s, '', %s, %s)",
                        [(url, kind, message, run_id, now) for url in failed],
                    )
        self._counts["queued"] -= len(failed)
        self._counts["failed"] += len(failed)
        return failed

    def schedule_recrawl(
        self,
        now: float,
        recrawl_after: float | None,
        start_fps: Iterable[int] = (),
        *,
        always_callbacks: Iterable[str] = (),
    ) -> int:
        with self._tx("schedule a recrawl in") as conn:
            n = conn.execute(
                _REQUEUE_AGAIN + " WHERE (fp = ANY(%s) OR callback = ANY(%s))"
                " AND state IN ('done', 'failed')",
                (now, list(start_fps), list(always_callbacks)),
            ).rowcount
            if recrawl_after is not None:
                n += conn.execute(
                    _REQUEUE_AGAIN + " WHERE state = 'done' AND fetched_at < %s",
                    (now, now - recrawl_after),
                ).rowcount
        self.recount()
        return n
