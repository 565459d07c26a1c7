"""The storage seam: :class:`CrawlStore`, what the engine needs from a crawl database, and
:func:`open_store`, the one way to get one.

How this works: the engine (``crawler.engine``) is the only caller, and it calls exactly the
methods below, from one thread of one process (its loop). :func:`open_store` picks the backend
from the ``--db`` target: a file path is SQLite (:class:`crawler.store.sqlite.Store`); a
``postgresql://`` URL is PostgreSQL (:class:`crawler.store.postgres.Store`, issue 10). Backends
are imported inside :func:`open_store`, so importing this module costs nothing a worker
process would carry, and a backend's driver is needed only by the runs that use it.

What every backend guarantees, method by method, is written on the Protocol. The common
thread: a frontier entry is keyed by its fingerprint ``fp`` and is in exactly one state
(``queued``, ``in_flight``, ``done``, ``failed``); a URL handed out by :meth:`take` stays in
the database (in flight) until its outcome is recorded or it is put back, so a crash loses
nothing but the batch being written; and results are keyed (a page by its URL, a page's items
by the page, a link by its pair), so recording the same outcome again replaces rather than
duplicates.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crawler.errors import StorageError
from crawler.messages import Job, NewRequest, Outcome

__all__ = [
    "BatchStats",
    "CrawlStore",
    "NodeStore",
    "database_file",
    "is_database_url",
    "open_store",
]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRESQL = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one ``record`` call wrote."""

    pages: int = 0
    items: int = 0
    errors: int = 0
    links: int = 0
    new_requests: int = 0  # frontier rows added from requests and follows
    done: int = 0
    failed: int = 0
    retried: int = 0
    bytes: int = 0


class CrawlStore(Protocol):
    """A crawl database as the engine uses it. One owner; not thread-safe."""

    # --- a run --------------------------------------------------------------------------

    def reset_in_flight(self) -> int:
        """Put every entry left in flight (by a crashed run) back in the queue; how many.

        Called once, before :meth:`begin_run`, by the run that owns the database."""
        ...

    def begin_run(self, spider: str, settings: dict[str, Any] | None = None) -> int:
        """Write a ``runs`` row (spider, start time, settings, pid, host name); its id.

        Committed before returning: a run killed from here on leaves a row whose
        ``finished_at`` stays NULL, which is how ``crawler runs`` tells it was killed."""
        ...

    def end_run(
        self,
        run_id: int,
        *,
        exit_code: int,
        finish_reason: str,
        stats: dict[str, Any] | None = None,
    ) -> None:
        """Finish run ``run_id``'s row: end time, exit code, reason, stats (JSON)."""
        ...

    def run_url_errors(self, run_id: int) -> tuple[int, int]:
        """``(URLs that ended with an error, URLs handled)`` in run ``run_id``, for the
        ``max_error_rate`` check; a URL robots.txt disallowed counts as neither."""
        ...

    def close(self) -> None:
        """Release the database; an open transaction is rolled back. Again is a no-op."""
        ...

    # --- robots.txt ---------------------------------------------------------------------

    def robots_policies(self, since: float) -> list[tuple[str, dict[str, Any]]]:
        """``(host, fields)`` of every stored policy fetched at or after ``since``; the
        fields are ``crawler.store.ROBOTS_COLUMNS``, as :meth:`put_robots` got them."""
        ...

    def put_robots(self, host: str, policy: dict[str, Any]) -> None:
        """Keep ``host``'s policy (keys ``ROBOTS_COLUMNS``), replacing the one it had."""
        ...

    # --- adaptive politeness -------------------------------------------------------------

    def host_states(self) -> dict[str, dict[str, Any]]:
        """What autothrottle learned per host in earlier runs: host -> ``HOST_STATE_COLUMNS``."""
        ...

    def put_host_states(self, states: dict[str, dict[str, Any]]) -> None:
        """Keep each host's learned state, replacing the one it had."""
        ...

    # --- cookies ------------------------------------------------------------------------

    def cookies(self) -> list[dict[str, Any]]:
        """Every stored cookie, as :meth:`put_cookies` got it (``crawler.cookies`` rows)."""
        ...

    def put_cookies(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace the stored cookies with ``rows`` (every jar of the crawl), in one
        transaction. The values are secrets: they are never logged nor put in messages."""
        ...

    # --- the frontier -------------------------------------------------------------------

    def add(self, requests: Iterable[NewRequest]) -> int:
        """Queue the requests whose ``fp`` is new, in one transaction; how many were new.

        A known ``fp`` is left as it is (deduplication by key, never by a set in memory),
        except that a request with a ``lastmod`` newer than a done entry's fetch queues that
        entry again, keeping its validators so the fetch is conditional."""
        ...

    def schedule_recrawl(
        self,
        now: float,
        recrawl_after: float | None,
        start_fps: Iterable[int] = (),
        *,
        always_callbacks: Iterable[str] = (),
    ) -> int:
        """Queue again, in one transaction: the done or failed entries among ``start_fps``
        and those whose callback is in ``always_callbacks``, and (with ``recrawl_after``)
        every done entry fetched before ``now - recrawl_after``; validators stay. How many."""
        ...

    def has_queued(self) -> bool:
        """Whether any entry is queued, due now or later."""
        ...

    def hosts_with_work(
        self, now: float, *, after: str = "", limit: int | None = None
    ) -> list[str]:
        """The hosts with a queued entry due at ``now`` (``not_before <= now``), in order
        of name: those after ``after``, at most ``limit`` (None: all). The read visits the
        queued hosts one index seek each and stops at ``limit``, so a window of a broad
        crawl's queue costs what the window holds (see ``Dispatcher.dispatch``)."""
        ...

    def next_not_before(self, now: float | None = None) -> float | None:
        """The earliest ``not_before`` later than ``now`` among queued entries; None: none."""
        ...

    def queued_url(self, host: str) -> str | None:
        """Any queued URL of ``host`` (the engine needs its scheme for robots.txt)."""
        ...

    def take_hosts(self, limits: dict[str, int], now: float) -> dict[str, list[Job]]:
        """Of each host of ``limits`` (``host -> limit``), up to ``limit`` due entries
        (highest priority, then oldest), moved to in flight before returning: no entry is
        handed out twice. Hosts that gave none are left out. One call for a dispatch round's
        hosts: on PostgreSQL it is one statement, where a call each would be a round trip
        each. (Both stores also have ``take(host, limit, now)``, the one-host case.)"""
        ...

    def requeue(self, fps: Iterable[int], *, count_attempt: bool = False) -> int:
        """Put these in-flight entries back in the queue (a stop, a dead worker); others
        are left alone. With ``count_attempt`` each counts one more attempt. How many."""
        ...

    def give_up(
        self,
        fps: Iterable[int],
        *,
        max_attempts: int,
        kind: str,
        message: str,
        run_id: int | None,
    ) -> list[str]:
        """Fail the queued entries among ``fps`` with ``max_attempts`` or more attempts,
        each with an ``errors`` row, in one transaction; their URLs."""
        ...

    def counts(self) -> dict[str, int]:
        """Frontier entries by state (every state a key); cheap enough for a progress line."""
        ...

    # --- results ------------------------------------------------------------------------

    def record(
        self,
        outcomes: Sequence[Outcome],
        *,
        run_id: int | None,
        store_body: bool = True,
        store_links: bool = False,
        recrawl_after: float | None = None,
        track_items: bool = False,
    ) -> BatchStats:
        """Write a batch of outcomes in one transaction: all of it or nothing.

        Per outcome: its page (by URL; a 304 or an unchanged body only refreshes the stored
        page), its items (replacing the page's earlier ones unless unchanged), its links and
        errors, its entry's new state (``retry``: queued with ``not_before = retry_at``), then
        its requests and follows. Idempotent by key: recording an outcome again (a URL
        fetched twice after a crash) replaces its rows, never duplicates them. An outcome for
        an unknown entry writes its rows and changes no state.

        With ``track_items`` (the spider declares ``item_key``), each page whose callback ran
        also updates the item history by ``Outcome.item_keys``: new and changed items, and
        removed ones only when the page's callback ran without a failure and no longer
        yields them (docs/changes.md); an unchanged page confirms its items."""
        ...

    # --- item history and quality gates ------------------------------------------------

    def item_change_counts(self, run_id: int) -> dict[str, int]:
        """``{"new": n, "changed": n, "removed": n}``: the item history's changes in a run."""
        ...

    def run_item_count(self, run_id: int) -> int:
        """The items on the pages run ``run_id`` fetched, parsed or kept because the page was
        unchanged: what the ``max_drop`` gate counts (a recrawl parses only changed pages)."""
        ...

    def recent_stats(self, spider: str, before_run: int, n: int) -> list[dict[str, Any]]:
        """The stats of ``spider``'s last ``n`` runs before ``before_run`` that finished with
        exit 0 (oldest first): what the quality gates compare a run with."""
        ...


class NodeStore(Protocol):
    """What a node of a run shared by several machines needs on top of :class:`CrawlStore`
    (PostgreSQL only; ``crawler.engine.nodes``, ``crawler/store/postgres/cluster.py``).

    Lease times are the server's clock. Between :meth:`join_run` and :meth:`leave`,
    ``take`` hands out only rows of hosts this node holds a live lease on, stamped with the
    node and the lease's epoch; ``requeue`` puts back only this node's rows; ``record``
    refuses (does not write, leaves the row to the new owner) an outcome whose row is no
    longer in flight under this node and its host's current epoch."""

    def join_run(
        self, spider: str, settings: dict[str, Any] | None, *, stale_after: float
    ) -> tuple[int, int, bool, float]:
        """Join the live run of ``spider`` (a node whose heartbeat is younger than
        ``stale_after``) or start one: ``(run_id, node_id, started, started_at)``. Starting
        one puts back what dead nodes left in flight; the starter seeds it, then calls
        :meth:`seeded`. :class:`~crawler.errors.LockedError` while another spider's run lives."""
        ...

    def seeded(self) -> None:
        """The run is seeded: other nodes may now take an empty frontier for the end."""
        ...

    def heartbeat(self, pages: int, items: int, stale_after: float) -> tuple[int, int, int, bool]:
        """This node lives, with its counters: ``(run pages, run items, live nodes, ended)``."""
        ...

    def hosts_with_work_among(self, hosts: Sequence[str], now: float) -> list[str]:
        """Those of ``hosts`` with a queued entry due at ``now``: one index probe each, where
        ``hosts_with_work`` walks the run's queued hosts (a window of a node's own hosts,
        every round; see ``Node.hosts``)."""
        ...

    def claim(
        self, hosts: Sequence[str], limit: int, ttl: float
    ) -> list[tuple[str, int, float, float | None]]:
        """Up to ``limit`` free leases among ``hosts`` (``FOR UPDATE SKIP LOCKED``), each
        with a new epoch, for ``ttl`` s: ``(host, epoch, next_fetch_at, crawl_delay)``."""
        ...

    def renew(self, leases: Sequence[tuple[str, int, float, float]], ttl: float) -> set[str]:
        """Extend ``(host, epoch, next_fetch_at, crawl_delay)`` leases; the hosts kept."""
        ...

    def release(self, leases: Sequence[tuple[str, int, float, float]]) -> None:
        """Give these leases up (nothing of theirs in flight), keeping their clocks."""
        ...

    def reap(self, grace: float) -> int:
        """Free leases expired more than ``grace`` s ago and requeue their hosts' in-flight
        rows; how many rows."""
        ...

    def robots_of(self, hosts: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """The stored robots.txt policies of ``hosts``, as ``robots_policies`` gives them."""
        ...

    def reconnect_count(self) -> int:
        """How many times the connection was lost and opened again."""
        ...

    def requeue_lost_takes(self, known: Sequence[int]) -> int:
        """Requeue this node's in-flight rows whose fingerprint is not in ``known`` (a take
        whose answer a lost connection swallowed); how many."""
        ...

    def busy_elsewhere(self, stale_after: float) -> bool:
        """Whether any row is in flight on any node, or a live node is seeding."""
        ...

    def last_refused(self) -> frozenset[int]:
        """The fingerprints of the outcomes the last ``record`` refused: not written, so
        the node does not count them."""
        ...

    def leave(
        self, *, exit_code: int, finish_reason: str, stats: dict[str, Any], stale_after: float
    ) -> bool:
        """Free this node's leases and end its row; the last live node ends the run (stats
        summed over the nodes). Whether this call ended the run."""
        ...


def is_database_url(target: str | os.PathLike[str]) -> bool:
    """Whether a ``--db`` target is a ``postgresql://`` URL (a server, no file of ours)."""
    match = _URL.match(os.fspath(target))
    return match is not None and match.group(1).lower() in _POSTGRESQL


def database_file(target: str | os.PathLike[str]) -> Path:
    """The file a ``--db`` target names, for what lives next to it (the run lock).

    Raises :class:`StorageError` for a database URL (a ``postgresql://`` URL names no file:
    ask :func:`is_database_url` first), any other scheme always. Checked before anything
    is created."""
    text = os.fspath(target)
    match = _URL.match(text)
    if match is None:
        return Path(text)
    scheme = match.group(1).lower()
    if scheme in _POSTGRESQL:
        raise StorageError(f"{_without_password(text)} is a database server, not a file")
    raise StorageError(
        f"unknown database URL scheme {scheme!r}: give a file path (SQLite) or a postgresql:// URL"
    )


def open_store(
    target: str | os.PathLike[str],
    *,
    fresh: bool = False,
    busy_timeout: float = 30.0,
    db_retry: float = 0.0,
) -> CrawlStore:
    """Open (creating it if needed) the crawl database ``target`` names.

    ``fresh`` empties the crawl (runs stay); ``busy_timeout`` is how long to wait for
    another writer; ``db_retry`` how long a server backend keeps reconnecting after losing
    its connection (a file has no connection to lose). Raises :class:`StorageError` when it
    cannot be used."""
    if is_database_url(target):
        from crawler.store.postgres import Store as PostgresStore

        return PostgresStore(
            os.fspath(target), fresh=fresh, busy_timeout=busy_timeout, db_retry=db_retry
        )
    path = database_file(target)
    from crawler.store.sqlite import Store  # the backend, only once one is asked for

    return Store(path, fresh=fresh, busy_timeout=busy_timeout)


def _without_password(url: str) -> str:
    # postgresql://user:secret@host/db -> postgresql://user@host/db: messages end up in logs.
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1@", url)
