"""Dispatch: which hosts' queued work starts now, and which worker gets it.

Each round asks the Store for hosts with ready work (a window of them, when the workers have
room: a broad crawl's queue holds tens of thousands), keeps those whose politeness clock allows
a start (fewest busy first), and takes at most their free slots (``per_host`` minus in flight;
one at a time under a delay), capped per worker (twice its threads) and by what is left of the
``max_pages`` budget. A host's ``per_host`` slots are split across the workers
(:func:`slot_shares`: shares summing to ``per_host``), so a one-site crawl parses on every
core; the parent's clock counts the host's requests across all workers, so the per-host limit
and the delay stay global, and a worker never holds more of a host than its share, so its
pool for that host never opens more connections than that and no fetch thread waits on a
pool slot. With robots
on, a host without known rules gets only its robots.txt Job, and Jobs its rules refuse become
``robots`` errors without being sent.

What it starts goes into the engine's in-flight table (``crawler.engine.inflight``), with a
politeness slot of its host; :meth:`Dispatcher.finished` and :meth:`Dispatcher.lost` give both
back together, so the table and the host clocks agree.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from crawler.engine.inflight import InFlight
from crawler.engine.politeness import Politeness
from crawler.engine.robotsgate import Gate, RobotsGate
from crawler.engine.throttle import Sample
from crawler.engine.workers import WorkerHandle, send
from crawler.messages import Failure, Job, Outcome

if TYPE_CHECKING:
    from crawler.robots import RobotsPolicy
    from crawler.store import CrawlStore

__all__ = ["Dispatcher", "obey_robots", "owner_of", "slot_shares"]


def owner_of(host: str, workers: int) -> int:
    """The worker index that owns ``host``: a stable hash, never the salted ``hash()``.

    The owner gets the first of the host's slots (and its robots.txt Job); see
    :func:`slot_shares`."""
    return zlib.crc32(host.encode()) % workers


def slot_shares(host: str, workers: int, per_host: int) -> tuple[int, ...]:
    """How many of ``host``'s ``per_host`` slots each worker holds; they sum to ``per_host``.

    Even shares, the remainder going to the workers from ``owner_of(host)`` on, so with fewer
    slots than workers different hosts still land on different workers.
    """
    base, extra = divmod(per_host, workers)
    first = owner_of(host, workers)
    return tuple(base + ((k - first) % workers < extra) for k in range(workers))


# A round's window of the queue's hosts: this many per Job the workers have room for,
# within these bounds (see Dispatcher.dispatch).
WINDOW_PER_SLOT = 4
MIN_WINDOW = 64
MAX_WINDOW = 2048


class Dispatcher:
    """Hands ready work to the workers and records it in the in-flight table."""

    def __init__(
        self,
        workers: Sequence[WorkerHandle],
        in_flight: InFlight,
        politeness: Politeness,
        worker_cap: int,
    ) -> None:
        self.workers = workers  # the engine's list: a replaced worker is seen here at once
        self.in_flight = in_flight
        self.politeness = politeness
        self.worker_cap = worker_cap
        # For autothrottle's Samples: fp -> requests to its host in flight when it started,
        # and per host the start times of what is in flight (oldest first: dicts keep order).
        self._levels: dict[int, int] = {}
        self._starts: dict[str, dict[int, float]] = {}
        # Set by the engine when cookies or a login are in play: adds each Job's Cookie
        # header, and puts back (second argument) the Jobs that must wait for a login.
        self.prepare: Callable[[list[Job], Callable[[list[int]], Any]], list[Job]] | None = None
        # Set by the engine when this process is a node of a shared run (PostgreSQL,
        # crawler.engine.nodes): a window of the hosts with work it holds a live lease on
        # (claiming some), read by the node instead of the queue's (see _queue_window).
        self.node_hosts: (
            Callable[[CrawlStore, float, str, int], tuple[list[str], str | None]] | None
        ) = None
        # ... and gives each Job its host's lease deadline (Job.not_after, crawler.worker.fence).
        self.lease_deadline: Callable[[str], float] | None = None
        self._held: dict[tuple[str, int], int] = {}  # (host, worker) -> its Jobs in flight
        self._cursor = ""  # the queue's hosts after this one are the next round's window
        self._shares: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"<Dispatcher {len(self.in_flight)} in flight>"

    def finished(self, fp: int, now: float, ok: bool, sample: Sample | None = None) -> None:
        """``fp`` is answered: forget it and free its host's slot (nothing if not in flight);
        ``sample`` (what the answer says about the host's load) goes to its autothrottle."""
        worker = self.in_flight.worker_of(fp)
        host = self.in_flight.finish(fp)
        level = self._levels.pop(fp, None)
        if host is not None:
            if worker is not None:
                self._release(host, worker)
            starts = self._forget_start(host, fp)
            if sample is not None and level is not None:
                oldest = next(iter(starts.values()), now) if starts else now
                sample = replace(sample, level=level, pending=now - oldest)
            self.politeness.finished(host, now, ok=ok, sample=sample)

    def lost(self, worker: int, now: float) -> list[int]:
        """``worker`` died: forget what it held, free those slots as failures; the fingerprints."""
        held = self.in_flight.take_worker(worker)
        for fp, host in held.items():
            self._levels.pop(fp, None)
            self._forget_start(host, fp)
            self._release(host, worker)
            self.politeness.finished(host, now, ok=False)
        return list(held)

    def _forget_start(self, host: str, fp: int) -> dict[int, float] | None:
        """Drop ``fp``'s start time; the host's start times left (None: none were kept).
        A host with none left goes: a broad crawl passes through millions of hosts."""
        starts = self._starts.get(host)
        if starts is not None:
            starts.pop(fp, None)
            if not starts:
                del self._starts[host]
        return starts

    def abandon(self) -> list[int]:
        """Forget everything in flight; the fingerprints, for the caller to requeue."""
        self._levels.clear()
        self._starts.clear()
        self._held.clear()
        return self.in_flight.take_all()

    def _release(self, host: str, worker: int) -> None:
        key = (host, worker)
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)

    def _rooms(self, host: str, planned: dict[int, int]) -> list[tuple[int, WorkerHandle]]:
        """Each live worker's room for ``host`` now (its share left, its cap less the Jobs
        ``planned`` for it this round), most room first."""
        n = len(self.workers)
        shares = self._shares.get(host)
        if shares is None or len(shares) != n:
            if len(self._shares) > 100_000:
                self._shares.clear()
            shares = self._shares[host] = slot_shares(host, n, self.politeness.policy.per_host)
        held = self._held
        rooms = []
        for k, handle in enumerate(self.workers):
            if not handle.alive or not shares[k]:
                continue
            busy = handle.busy + planned.get(k, 0)
            room = min(shares[k] - held.get((host, k), 0), self.worker_cap - busy)
            if room > 0:
                rooms.append((room, handle))
        rooms.sort(key=lambda r: (-r[0], r[1].busy + planned.get(r[1].index, 0)))
        return rooms

    def dispatch(
        self, store: CrawlStore, robots: RobotsGate | None, now: float, budget: float = math.inf
    ) -> list[Outcome]:
        """Send what may start now (at most ``budget`` Jobs); the Outcomes of refused Jobs."""
        denied: list[Outcome] = []
        # The hosts with work, a window at a time, from where the last round's window
        # ended: a round reads a few times as many hosts as the workers have room for, not
        # every host with work (measured, 20,000 hosts: that read and the walk over its
        # hosts were 75% of the engine's time; benchmarks/broad.py). A window whose hosts
        # cannot start (their delay, their slots) is followed by the next, until the room
        # is used or the hosts have gone round once. With fewer hosts than a window (most
        # crawls) every round reads them all, from the first.
        window = self._queue_window if self.node_hosts is None else self.node_hosts
        start = after = self._cursor
        wrapped = False
        while budget > 0:
            room = self._free_room()
            if room <= 0:
                break
            want = min(MAX_WINDOW, max(MIN_WINDOW, WINDOW_PER_SLOT * room))
            hosts, next_after = window(store, now, after, want)
            if wrapped:
                if next_after is not None and next_after >= start:
                    next_after = None
                hosts = [h for h in hosts if h < start]
            if hosts:
                budget = self._dispatch_hosts(store, robots, hosts, now, budget, denied)
            if next_after is not None:
                self._cursor = after = next_after
                continue
            self._cursor = ""
            if wrapped or not start:
                break  # every host has been read this round
            wrapped, after = True, ""  # round again from the first host, up to ``start``
        return denied

    @staticmethod
    def _queue_window(
        store: CrawlStore, now: float, after: str, limit: int
    ) -> tuple[list[str], str | None]:
        """The queue's hosts with work after ``after`` (at most ``limit``), and where the next
        window starts (None: this one reached the last)."""
        hosts = store.hosts_with_work(now, after=after, limit=limit)
        return hosts, hosts[-1] if len(hosts) == limit else None

    def _free_room(self) -> int:
        """Jobs the live workers can take now (each up to ``worker_cap``)."""
        cap = self.worker_cap
        return sum(max(0, cap - h.busy) for h in self.workers if h.alive)

    def _dispatch_hosts(
        self,
        store: CrawlStore,
        robots: RobotsGate | None,
        hosts: list[str],
        now: float,
        budget: float,
        denied: list[Outcome],
    ) -> float:
        """Start what ``hosts`` may start now (at most ``budget`` Jobs; refused ones go to
        ``denied``); the budget left."""
        if not hosts:
            return budget
        outgoing: dict[int, list[Job]] = {}
        politeness = self.politeness
        # First what each host may start (its room, split over the workers), then one take
        # for every host: on PostgreSQL a take is a round trip, and a round has several hosts.
        plans: list[tuple[str, list[tuple[int, WorkerHandle]], RobotsPolicy | None]] = []
        limits: dict[str, int] = {}
        planned: dict[int, int] = {}  # worker index -> Jobs planned for it this round
        for host in politeness.ready(hosts, now):
            if budget <= 0:
                break
            rooms = self._rooms(host, planned)
            if not rooms:
                continue
            handle = rooms[0][1]
            room = min(politeness.free_slots(host, now), sum(r for r, _ in rooms))
            if budget < room:
                room = int(budget)
            if room <= 0:
                continue
            policy = None
            if robots is not None:
                gate, policy = robots.state(host, now)
                if gate is not Gate.GO:
                    job = self._robots_gate(store, robots, host, gate, policy, now)
                    if job is not None:
                        if self.lease_deadline is not None:
                            job = replace(job, not_after=self.lease_deadline(host))
                        self._start(handle, host, job, now)
                        outgoing.setdefault(handle.index, []).append(job)
                    continue
            plans.append((host, rooms, policy))
            limits[host] = room
            budget -= room
            left = room
            for share, worker in rooms:
                n = min(share, left)
                planned[worker.index] = planned.get(worker.index, 0) + n
                left -= n
        taken = store.take_hosts(limits, now) if limits else {}
        if budget != math.inf:  # what a host had less of than planned goes back
            budget += sum(limits.values()) - sum(map(len, taken.values()))
        for host, rooms, policy in plans:
            jobs = taken.get(host)
            if not jobs:
                continue
            if policy is not None:
                jobs = obey_robots(policy, jobs, denied)
            if self.prepare is not None and jobs:
                jobs = self.prepare(jobs, store.requeue)  # Cookie headers (crawler.engine.sessions)
            if self.lease_deadline is not None and jobs:
                until = self.lease_deadline(host)
                jobs = [replace(job, not_after=until) for job in jobs]
            given = 0
            for share, worker in rooms:  # most room first: the host spreads over the workers
                part = jobs[given : given + share]
                if not part:
                    break
                for job in part:
                    self._start(worker, host, job, now)
                outgoing.setdefault(worker.index, []).extend(part)
                given += len(part)
        for index, batch in outgoing.items():
            send(self.workers[index], ("jobs", batch))
            # A failed send means the worker is dying; its sentinel tells us soon and the
            # jobs are requeued with the rest of its in-flight set.
        return budget

    def _start(self, handle: WorkerHandle, host: str, job: Job, now: float) -> None:
        self.politeness.started(host, now)
        self._levels[job.fp] = self.politeness.in_flight(host)
        self._starts.setdefault(host, {})[job.fp] = now
        self.in_flight.start(job.fp, handle.index, host)
        key = (host, handle.index)
        self._held[key] = self._held.get(key, 0) + 1

    def _robots_gate(
        self,
        store: CrawlStore,
        robots: RobotsGate,
        host: str,
        gate: Gate,
        policy: RobotsPolicy | None,
        now: float,
    ) -> Job | None:
        """A host whose rules are not known: the Job that fetches its robots.txt, if due."""
        if gate is Gate.FETCH:
            url = store.queued_url(host)
            if url is not None:
                return robots.begin(host, url)
        elif gate is Gate.WAIT and policy is not None and policy.retry_at is not None:
            self.politeness.push(host, policy.retry_at)  # wake up then, not before
        return None


def obey_robots(policy: RobotsPolicy, jobs: list[Job], denied: list[Outcome]) -> list[Job]:
    """The Jobs robots.txt allows; the others become "done" with a ``robots`` errors row."""
    allowed = []
    for job in jobs:
        if policy.allows(job.url):
            allowed.append(job)
        else:
            failure = Failure(job.url, "robots", "disallowed by robots.txt")
            denied.append(Outcome(job.fp, job.url, job.host, "done", failures=(failure,)))
    return allowed
