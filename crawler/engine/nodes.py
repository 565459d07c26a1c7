"""One node of a run shared by several machines over PostgreSQL (issue 10).

How this works: :class:`Node` is the engine's side of ``crawler/store/postgres/cluster.py``.
It joins the run, then, from the engine's loop (:meth:`Node.tick`, a time check per turn),
every 0.5 s: heartbeats (reading the run's global counters for the limits and the live
nodes for the fair share) and gives back hosts it has no work for (or more than its share);
every ``lease_ttl / 3`` seconds (2 s at most) also renews its host leases (writing each
host's politeness clock with them) and frees the leases of dead nodes. Dispatch asks
:meth:`Node.hosts` which hosts it may start requests to: the hosts it holds whose *local*
lease deadline has not passed, claiming free ones up to its fair share (hosts with work
divided by live nodes). The local deadline is measured from the moment the renewal was
*sent*, so it always falls before the server's ``expires_at``: a node that was paused stops
starting requests to a host before anyone may take the host over. Each Job carries its host's
deadline (``Job.not_after``, :meth:`Node.deadline`), so a Job that waited in a worker (behind
busy threads, or in a node stopped and resumed) is not sent after it either
(``crawler.worker.fence``); the worker answers it ``lease_lost`` and the engine puts the URL
back in the queue if this node still holds it (``crawler.engine.loop``).

Nothing here runs for SQLite: the engine holds ``None`` instead of a Node, and the hot loop
pays one ``is None`` test per turn.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from crawler.engine.politeness import Politeness
from crawler.engine.robotsgate import RobotsGate
from crawler.engine.runstats import RunStats
from crawler.engine.shutdown import GRACE, Shutdown
from crawler.errors import EXIT_FINISHED, EXIT_LIMIT
from crawler.settings import Settings
from crawler.store.api import CrawlStore, NodeStore

__all__ = ["Node", "lease_grace"]

log = logging.getLogger("crawler")

CLAIM_EVERY = 0.2  # seconds between claims of free hosts while some wait
MAX_CANDIDATES = 200  # hosts offered to one claim statement
WINDOW = 2048  # the run's hosts with work read at once (Node.look)
HEARTBEAT_MAX = 2.0  # seconds between lease renewals, at most
LOOK_EVERY = 0.5  # seconds between heartbeats (the run's counters, live nodes, the share)
# ... except the second, this soon after the first: nodes started together (cron, a k8s Job)
# join within a moment, and until a node sees the others its share is every host.
FIRST_LOOK_AGAIN = 0.1


def lease_grace(settings: Settings) -> float:
    """How long after a lease expired another node may take the host: longer than any
    request the old owner may still have running. A request ends by the worker's
    whole-response deadline (``crawler.worker.runner``: ``max(60, 4 * timeout)``; a test
    keeps the two equal), started at the latest at the old owner's local deadline."""
    return max(60.0, settings.timeout * 4) + 1.0


class Node:
    """This process as a node of a shared run: its leases and heartbeat."""

    def __init__(
        self,
        store: NodeStore,
        settings: Settings,
        politeness: Politeness,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.politeness = politeness
        self.ttl = settings.lease_ttl
        self.grace = lease_grace(settings)
        self.stale_after = self.ttl + self.grace  # a node silent this long is dead
        # Renewals at least every 2 s (one statement for every held host). The heartbeat
        # and the fair-share check are two statements whatever the node holds: every 0.5 s,
        # so a node that joins a busy run gets its share at once (the others see it and
        # drain hosts for it within 0.5 s, not after a renewal period).
        self.every = max(0.2, min(self.ttl / 3, HEARTBEAT_MAX))
        self.look_every = min(self.every, LOOK_EVERY)
        self.clock = clock
        self.robots: RobotsGate | None = None
        self.run_id = 0
        self.node_id = 0
        self.started_at = 0.0
        # host -> (epoch, local deadline on ``clock``)
        self.leases: dict[str, tuple[int, float]] = {}
        # Held hosts beyond the fair share: nothing new starts; released once idle.
        self.draining: set[str] = set()
        self.run_pages = 0  # the whole run's, as of the last heartbeat (this node's included)
        self.run_items = 0
        self.live_nodes = 1
        self.run_ended = False
        self._next_beat = 0.0
        self._next_look = 0.0
        self._next_claim = 0.0
        self._next_scan = 0.0  # the next read of the run's hosts with work (hosts())
        self._in_flight: Callable[[str], int] = politeness.in_flight
        # The fingerprints the engine has in flight (set by the engine; see _beat).
        self.known_in_flight: Callable[[], list[int]] = list
        self._reconnects = 0
        # The run's hosts with work, read a window at a time (look()): where the next window
        # starts, how many the windows of this round of them found so far, and of the last.
        self._cursor = ""
        self._counting = 0
        self._counted = 0
        self._own_work: set[str] = set()  # the held ones with work, as last probed
        self._held_sorted: list[str] | None = None  # the held hosts by name (_held_names)

    def __repr__(self) -> str:
        return (
            f"<Node {self.node_id} run {self.run_id} {len(self.leases)} hosts"
            f" {self.live_nodes} live nodes>"
        )

    # -- joining and leaving ------------------------------------------------------------------

    def join(self, spider: str, settings: dict[str, Any]) -> tuple[int, bool]:
        """Join or start the run of ``spider``: ``(run_id, seed)``; ``seed``: this node
        started the run and must seed it (then call :meth:`seeded`)."""
        run_id, self.node_id, started, started_at = self.store.join_run(
            spider, settings, stale_after=self.stale_after
        )
        self.run_id, self.started_at = run_id, started_at
        verb = "started" if started else "joined"
        log.info("node %d %s run %d", self.node_id, verb, run_id)
        return run_id, started

    def seeded(self) -> None:
        self.store.seeded()

    def leave(self, exit_code: int, reason: str, stats: dict[str, Any]) -> None:
        self.store.release(self._clocks(list(self.leases)))
        self.leases.clear()
        self._held_sorted = None
        self.store.leave(
            exit_code=exit_code, finish_reason=reason, stats=stats, stale_after=self.stale_after
        )

    # -- the loop's side ----------------------------------------------------------------------

    def tick(self, counters: RunStats, shutdown: Shutdown, now: float) -> None:
        """The heartbeat when due, then the run's limits against the whole run's counters."""
        mono = self.clock()
        if mono >= self._next_look:
            first = self._next_look == 0.0
            self._next_look = mono + (
                min(FIRST_LOOK_AGAIN, self.look_every) if first else self.look_every
            )
            renew = mono >= self._next_beat
            if renew:
                self._next_beat = mono + self.every
            self._beat(counters, renew)
        elif self.draining:
            self._release_drained()
        s = self.settings
        if shutdown.reason is not None:
            return
        if s.max_runtime and now - self.started_at >= s.max_runtime:
            shutdown.stop("max_runtime", EXIT_LIMIT, GRACE)
        elif s.max_pages and self.others_pages(counters) + counters.pages >= s.max_pages:
            shutdown.stop("max_pages", EXIT_LIMIT, GRACE * 6)
        elif s.max_items and self.run_items - self._own_items + counters.items >= s.max_items:
            shutdown.stop("max_items", EXIT_LIMIT, GRACE * 6)
        elif self.run_ended:
            shutdown.stop("finished", EXIT_FINISHED, GRACE)

    def others_pages(self, counters: RunStats) -> int:
        """Pages the other nodes stored (as of the last heartbeat)."""
        return self.run_pages - self._own_pages

    _own_pages = 0
    _own_items = 0

    def _beat(self, counters: RunStats, renew: bool) -> None:
        store = self.store
        self._own_pages, self._own_items = counters.pages, counters.items
        pages, items, live, ended = store.heartbeat(
            counters.pages, counters.items, self.stale_after
        )
        self.run_pages, self.run_items, self.live_nodes, self.run_ended = pages, items, live, ended
        if store.reconnect_count() != self._reconnects:
            # A take answered by a connection that then broke: its rows are ours in the
            # database and unknown to the engine. Only after a reconnect can that happen.
            self._reconnects = store.reconnect_count()
            lost = store.requeue_lost_takes(self.known_in_flight())
            if lost:
                log.warning(
                    "after reconnecting: %d URLs taken but never handed out, requeued", lost
                )
        if renew and self.leases:
            sent = self.clock()
            kept = store.renew(self._clocks(list(self.leases)), self.ttl)
            for host in list(self.leases):
                if host in kept:
                    self.leases[host] = (self.leases[host][0], sent + self.ttl)
                else:
                    log.warning("lost the lease of %s", host)
                    self._forget(host)
        if renew:
            requeued = store.reap(self.grace)
            if requeued:
                log.warning("took over dead leases: %d URLs in flight back in the queue", requeued)
        self._shed()

    def _shed(self) -> None:
        """Give back hosts with nothing in flight here that have no work; drain the hosts
        beyond the fair share (no new starts, released once idle), least busy first, so a
        node that joined late or ran out of hosts gets some of the others'."""
        own = self._own_work
        gone = [h for h in self.leases if h not in own and not self._in_flight(h)]
        keep = [h for h in self.leases if h in own and h not in self.draining]
        extra = len(keep) - self._share()
        if extra > 0:
            keep.sort(key=self._in_flight)
            self.draining.update(keep[:extra])
        self._release(gone)
        self._release_drained()

    def _release_drained(self) -> None:
        self._release([h for h in self.draining if not self._in_flight(h)])

    def _release(self, hosts: list[str]) -> None:
        hosts = [h for h in hosts if h in self.leases]
        if hosts:
            self.store.release(self._clocks(hosts))
            for host in hosts:
                self._forget(host)

    def _forget(self, host: str) -> None:
        """``host`` is no longer held (given back or lost): out of every view of the leases."""
        del self.leases[host]
        self.draining.discard(host)
        self._own_work.discard(host)
        self._held_sorted = None

    def _share(self) -> int:
        return max(1, math.ceil(self._run_hosts() / max(1, self.live_nodes)))

    def _clocks(self, hosts: list[str]) -> list[tuple[str, int, float, float]]:
        out = []
        for host in hosts:
            c = self.politeness.clock(host)
            out.append((host, self.leases[host][0], c.ready_at, c.crawl_delay))
        return out

    def hosts(
        self, store: CrawlStore, now: float, after: str = "", limit: int | None = None
    ) -> tuple[list[str], str | None]:
        """A window of the hosts with work this node may start requests to now, read from
        ``store`` (this node's store, as the engine calls it): of the hosts it holds, those
        after ``after`` by name, at most ``limit``; and where the next window starts (None:
        this one reached the last). The dispatcher reads them as it reads the queue's hosts
        with SQLite (``Dispatcher.dispatch``): a node of a broad crawl holds thousands, and
        probing them all every round was 37% of its time (20,000 hosts, one node).

        Each window's held hosts are probed (one index probe each). A window of the run's
        hosts with work is read too (:meth:`look`) when the node may claim some (it is below
        its share and a claim is due, every ``CLAIM_EVERY``), at least every
        ``look_every``, and while it holds none; what it claims comes with the window."""
        mono = self.clock()
        held = self._held_names()
        first = bisect.bisect_right(held, after) if after else 0
        last = len(held) if limit is None else min(len(held), first + limit)
        probe = held[first:last]
        next_after = probe[-1] if probe and last < len(held) else None
        own = self.store.hosts_with_work_among(probe, now) if probe else []
        self._own_work.difference_update(probe)
        self._own_work.update(own)
        if (
            not self.leases
            or mono >= self._next_scan
            or (mono >= self._next_claim and self._below_share())
        ):
            self._next_scan = mono + self.look_every
            own += self.look(store, now)
        return self._startable(own, mono), next_after

    def _held_names(self) -> list[str]:
        """The held hosts by name (kept until a lease is claimed or given up)."""
        if self._held_sorted is None:
            self._held_sorted = sorted(self.leases)
        return self._held_sorted

    def _below_share(self) -> bool:
        """Whether this node holds fewer hosts with work than its share (as last read)."""
        return len(self._own_work) < min(self._run_hosts(), self._share())

    def _startable(self, hosts: list[str], mono: float) -> list[str]:
        leases, draining = self.leases, self.draining
        return [h for h in hosts if h in leases and leases[h][1] > mono and h not in draining]

    def look(self, store: CrawlStore, now: float) -> list[str]:
        """Read the next window of the run's hosts with work (``WINDOW`` of them, from where
        the last window ended) and claim free ones up to the share; the hosts claimed.

        A window, not every host: that read follows the run's hosts, not this node's
        (measured with PostgreSQL: 64 ms at 10,000 hosts, 638 ms at 100,000, read every
        0.2-0.5 s by every node). The windows go round the run's hosts, and the share is
        counted from the last full round (with fewer hosts than a window, every read is
        one: the count is exact each time)."""
        window = store.hosts_with_work(now, after=self._cursor, limit=WINDOW)
        if len(window) < WINDOW:  # the last of the run's hosts: the round is complete
            self._counted, self._counting, self._cursor = self._counting + len(window), 0, ""
        else:
            self._counting += len(window)
            self._cursor = window[-1]
        mono = self.clock()
        if mono < self._next_claim:
            return []
        # Due even when nothing here is free: a node below its share whose window was all
        # taken would otherwise read the next window on every round.
        self._next_claim = mono + CLAIM_EVERY
        leases = self.leases
        free = [h for h in window if h not in leases]
        if not free:
            return []
        # The share is of hosts with work: a held host that has none left (only requests in
        # flight, given back once idle) takes no room from one that waits for a lease.
        room = self._share() - len(self._own_work)
        if room <= 0:
            return []
        claimed = self._claim(free, room, now)
        self._own_work.update(claimed)
        return claimed

    def _run_hosts(self) -> int:
        """The run's hosts with work: the last full round of windows, or this round's so far
        when more (the run grew, or the first round is not complete yet)."""
        return max(self._counted, self._counting)

    def claim_wait(self) -> float | None:
        """Seconds until this node claims hosts again, when it is below its share of the
        run's hosts with work (it waits for hosts the others give back: they drain theirs
        beyond the share at their heartbeat); None when it is not. A node with nothing in
        flight wakes up for it: with only its idle waits, a node that found every host taken
        at the start claimed its share half a second after it was given back (measured: its
        first fetch 1.0 s into a 5-second crawl, 16% fewer pages/s that round)."""
        if not self._below_share():
            return None
        return max(0.0, self._next_claim - self.clock())

    def deadline(self, host: str) -> float:
        """The local lease deadline of ``host`` on ``clock``: a Job of it carries this as
        ``not_after``, and its worker sends nothing after it (``crawler.worker.fence``; the
        worker reads ``time.monotonic()``, the default clock). A host not held: now."""
        lease = self.leases.get(host)
        return self.clock() if lease is None else lease[1]

    def _claim(self, free: list[str], room: int, now: float) -> list[str]:
        """Claim up to ``room`` of the ``free`` hosts; the ones claimed."""
        if len(free) > MAX_CANDIDATES:
            free = random.sample(free, MAX_CANDIDATES)
        sent = self.clock()
        claimed = self.store.claim(free, room, self.ttl)
        if not claimed:
            return []
        self._held_sorted = None
        for host, epoch, next_fetch_at, crawl_delay in claimed:
            self.leases[host] = (epoch, sent + self.ttl)
            # The last owner's clock: its spacing (Crawl-delay, Retry-After) holds across nodes.
            if crawl_delay:
                self.politeness.set_crawl_delay(host, crawl_delay)
            if next_fetch_at > now:
                self.politeness.push(host, next_fetch_at)
        if self.robots is not None:
            rows = self.store.robots_of([c[0] for c in claimed])
            for host, policy in self.robots.load(rows):
                self.politeness.set_crawl_delay(host, policy.crawl_delay)
        return [c[0] for c in claimed]

    def busy_elsewhere(self) -> bool:
        """Whether the run still has work in flight somewhere (or a node seeding it)."""
        return bool(self.store.busy_elsewhere(self.stale_after))
