"""Frontier operations: queue requests and links, hand out work, put it back, give up, recrawl.

The ``frontier`` table is the crawl's memory: one row per request fingerprint (``fp``). The
unique index ``frontier_key (url, fp)`` is the deduplication (``INSERT OR IGNORE``; no Python
set of URLs exists): led by the URL, so the links of one page land on neighbouring leaves and
the cost of a new link stays flat as the frontier grows (see ``crawler.store.schema``). Lookups
by fingerprint alone go through ``frontier_taken``, which holds only entries taken at least
once; a queued entry is taken by its ``id`` and its outcome recorded by ``(url, fp)``. The
table's key is an integer ``id`` that grows with each insert, so a new row is appended rather
than written to a random page of the table.
``state`` is short text: ``queued``, ``in_flight``, ``done`` or ``failed``. ``seq`` records
insertion order. Two partial indexes keep the scheduling queries independent of how many rows
are done: ``frontier_queue (host, priority DESC, seq, not_before) WHERE state = 'queued'``
serves ``take`` and ``hosts_with_work``; ``frontier_delayed (not_before)`` covers the few
queued rows waiting for a retry time. Every call here is one transaction (or joins the open
one) and moves the in-memory counts by exactly what it changed.

All of it is plain SQL on purpose: ``take`` and the inserts run for every dispatch and every
batch, thousands of rows a second, and sqlite-utils would add its per-call table and column
lookups to each; ``executemany`` of a prepared statement does one statement per row and no
more.
"""

from __future__ import annotations

from collections.abc import Iterable

from crawler.messages import Follow, Job, NewRequest
from crawler.store.connection import Connection
from crawler.store.schema import TAKEN, job_from_row, to_json

_ADD_FOLLOW = (
    "INSERT OR IGNORE INTO frontier (fp, url, host, depth, seq, discovered_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ADD_REQUEST = (
    "INSERT OR IGNORE INTO frontier (fp, url, host, method, headers, body, callback, meta,"
    " depth, priority, seq, redirect_urls, discovered_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TAKE = (
    "SELECT id, fp, url, method, headers, body, callback, meta, depth, attempts, redirect_urls,"
    " etag, last_modified, content_hash FROM frontier"
    " WHERE state = 'queued' AND host = ? AND not_before <= ?"
    " ORDER BY priority DESC, seq LIMIT ?"
)
# Distinct queued hosts by skipping through the partial index: one seek per host, so the
# cost follows the number of hosts, not the number of queued rows. SQLite runs the recursion
# only as far as the outer LIMIT reads it.
_QUEUED_HOSTS = """
WITH RECURSIVE h(host) AS (
    SELECT (SELECT min(host) FROM frontier WHERE state = 'queued' AND host > ?)
    UNION ALL
    SELECT (SELECT min(host) FROM frontier WHERE state = 'queued' AND host > h.host)
    FROM h WHERE h.host IS NOT NULL
)
SELECT host FROM h WHERE host IS NOT NULL AND EXISTS (
    SELECT 1 FROM frontier WHERE state = 'queued' AND host = h.host AND not_before <= ?
) LIMIT ?
"""


class FrontierMixin(Connection):
    """The ``frontier`` table's operations (the ``Store`` methods the engine schedules with)."""

    def add(self, requests: Iterable[NewRequest]) -> int:
        """Queue requests not seen before (by ``fp``); the number of new rows.

        A request with a ``lastmod`` also queues again a done entry fetched before it.
        """
        now = self._clock()
        seq = self._seq
        requests = list(requests)
        rows = (
            (
                r.fp,
                r.url,
                r.host,
                r.method,
                to_json([list(h) for h in r.headers]),
                r.body,
                r.callback,
                to_json(r.meta),
                r.depth,
                r.priority,
                next(seq),
                to_json(list(r.redirect_urls)),
                now,
                now,
            )
            for r in requests
        )
        with self._tx("add requests to") as conn:
            before = conn.total_changes
            conn.executemany(_ADD_REQUEST, rows)
            new = conn.total_changes - before
            stale = [(now, r.url, r.fp, r.lastmod) for r in requests if r.lastmod is not None]
            if stale:
                # Recrawl rule 3: a sitemap says the page changed after we last fetched it.
                # Its validators stay, so the fetch is still conditional.
                before = conn.total_changes
                conn.executemany(
                    "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                    " updated_at = ? WHERE url = ? AND fp = ? AND state = 'done'"
                    " AND fetched_at < ?",
                    stale,
                )
                requeued = conn.total_changes - before
                self._counts["done"] -= requeued
                self._counts["queued"] += requeued
        self._counts["queued"] += new
        return new

    def add_follows(self, follows: Iterable[Follow], *, depth: int) -> int:
        """Queue ``(fp, url, host)`` links (default callback and priority) at ``depth``."""
        now = self._clock()
        seq = self._seq
        rows = ((fp, url, host, depth, next(seq), now, now) for fp, url, host in follows)
        with self._tx("add links to") as conn:
            before = conn.total_changes
            conn.executemany(_ADD_FOLLOW, rows)
            new = conn.total_changes - before
        self._counts["queued"] += new
        return new

    def hosts_with_work(
        self, now: float, *, after: str = "", limit: int | None = None
    ) -> list[str]:
        """Hosts with a queued entry whose ``not_before`` has passed (``after``, ``limit``:
        a window of them, see ``CrawlStore.hosts_with_work``)."""
        args = (after, now, -1 if limit is None else limit)
        return [row[0] for row in self.conn.execute(_QUEUED_HOSTS, args)]

    def next_not_before(self, now: float | None = None) -> float | None:
        """The earliest ``not_before`` after ``now`` among queued entries (None: none waits)."""
        at = self._clock() if now is None else now
        row = self.conn.execute(
            "SELECT min(not_before) FROM frontier"
            " WHERE state = 'queued' AND not_before > 0 AND not_before > ?",
            (at,),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def queued_url(self, host: str) -> str | None:
        """Any queued URL of ``host`` (the engine needs its scheme to ask for robots.txt)."""
        row = self.conn.execute(
            "SELECT url FROM frontier WHERE state = 'queued' AND host = ? LIMIT 1", (host,)
        ).fetchone()
        return None if row is None else str(row[0])

    def has_queued(self) -> bool:
        row = self.conn.execute("SELECT 1 FROM frontier WHERE state = 'queued' LIMIT 1")
        return row.fetchone() is not None

    def take_hosts(self, limits: dict[str, int], now: float) -> dict[str, list[Job]]:
        """Up to ``limits[host]`` ready entries of each host (priority, then age), now in
        flight; the hosts that had some. One transaction for them all (a broad crawl's round
        takes one or two entries from each of many hosts), and the counts move once it is
        committed."""
        jobs: dict[str, list[Job]] = {}
        taken = 0
        with self._tx("take work from") as conn:
            for host, limit in limits.items():
                if limit <= 0:
                    continue
                rows = conn.execute(_TAKE, (host, now, limit)).fetchall()
                if not rows:
                    continue
                conn.executemany(
                    "UPDATE frontier SET state = 'in_flight', updated_at = ? WHERE id = ?",
                    [(now, row[0]) for row in rows],
                )
                jobs[host] = [job_from_row(host, row[1:]) for row in rows]
                taken += len(rows)
        self._counts["queued"] -= taken
        self._counts["in_flight"] += taken
        return jobs

    def take(self, host: str, limit: int, now: float) -> list[Job]:
        """Up to ``limit`` ready entries of ``host`` (priority, then age), now in flight."""
        return self.take_hosts({host: limit}, now).get(host, [])

    def reset_in_flight(self) -> int:
        """Every in-flight entry back to queued (a run starting after a crash)."""
        with self._tx("reset") as conn:
            n = conn.execute(
                "UPDATE frontier SET state = 'queued' WHERE state = 'in_flight'"
            ).rowcount
        self._counts["in_flight"] -= n
        self._counts["queued"] += n
        return n

    def requeue(self, fps: Iterable[int], *, count_attempt: bool = False) -> int:
        """These in-flight entries back to queued (shutdown, a dead worker).

        With ``count_attempt`` (the worker fetching them died) each counts one more fetch
        attempt, so a URL that kills its worker every time runs out of attempts
        (:meth:`give_up`) instead of looping forever.
        """
        sql = "UPDATE frontier SET state = 'queued' WHERE fp = ? AND state = 'in_flight'"
        if count_attempt:
            sql = sql.replace("'queued'", "'queued', attempts = attempts + 1", 1)
        with self._tx("requeue in") as conn:
            before = conn.total_changes
            conn.executemany(sql, ((fp,) for fp in fps))
            n = conn.total_changes - before
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
        """Queued entries among ``fps`` with ``max_attempts`` or more attempts become failed,
        each with an ``errors`` row; returns their URLs."""
        now = self._clock()
        failed: list[str] = []
        with self._tx("give up on entries in") as conn:
            for fp in fps:
                row = conn.execute(
                    f"SELECT id, url FROM frontier WHERE fp = ? AND {TAKEN}"
                    " AND state = 'queued' AND attempts >= ?",
                    (fp, max_attempts),
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "UPDATE frontier SET state = 'failed', updated_at = ? WHERE id = ?",
                    (now, row[0]),
                )
                conn.execute(
                    "INSERT INTO errors (url, kind, message, traceback, run_id, at)"
                    " VALUES (?, ?, ?, '', ?, ?)",
                    (row[1], kind, message, run_id, now),
                )
                failed.append(row[1])
        self._counts["queued"] -= len(failed)
        self._counts["failed"] += len(failed)
        return failed

    # --- inside record()'s transaction (it counts the new rows once, itself) --------------

    def _add_requests_in_tx(self, requests: Iterable[NewRequest]) -> int:
        # add() joins the open transaction; undo its counter change, record() counts once.
        n = self.add(requests)
        self._counts["queued"] -= n
        return n

    def _add_follows_in_tx(self, follows: Iterable[Follow], depth: int, now: float) -> int:
        seq = self._seq
        before = self.conn.total_changes
        self.conn.executemany(
            _ADD_FOLLOW, ((fp, url, host, depth, next(seq), now, now) for fp, url, host in follows)
        )
        return self.conn.total_changes - before

    # --- recrawl --------------------------------------------------------------------------

    def schedule_recrawl(
        self,
        now: float,
        recrawl_after: float | None,
        start_fps: Iterable[int] = (),
        *,
        always_callbacks: Iterable[str] = (),
    ) -> int:
        """Queue again the start entries and done entries fetched before ``now - recrawl_after``.

        Entries whose callback is in ``always_callbacks`` (sitemaps) are queued again like
        start entries. Their validators (etag, last_modified) stay, so their ``Job`` asks
        conditionally. Returns how many entries were queued again.
        """
        with self._tx("schedule a recrawl in") as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                f" updated_at = ? WHERE fp = ? AND {TAKEN} AND state IN ('done', 'failed')",
                ((now, fp) for fp in start_fps),
            )
            conn.executemany(
                "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                " updated_at = ? WHERE callback = ? AND state IN ('done', 'failed')",
                ((now, name) for name in always_callbacks),
            )
            if recrawl_after is not None:
                conn.execute(
                    "UPDATE frontier SET state = 'queued', not_before = 0, attempts = 0,"
                    " updated_at = ? WHERE state = 'done' AND fetched_at < ?",
                    (now, now - recrawl_after),
                )
            n = conn.total_changes - before
        self.recount()
        return n
