"""Per-host politeness clocks: when the next request to a host may start. No I/O.

:class:`HostClock` keeps one host's slots, delay, Crawl-delay floor and failure backoff;
:class:`Politeness` keeps every host's clock for the engine's loop. Their methods take ``now``
explicitly and the jitter RNG is injected, so tests drive them with plain numbers.

A host's policy is the crawl's, overridden by its most specific ``host_settings`` entry.
With ``autothrottle`` on, a :class:`~crawler.engine.throttle.ThrottleState` per host lowers
the slots below ``per_host`` and may add a gap between starts; ``delay``, ``Crawl-delay`` and
``Retry-After`` stay floors the controller can only add to.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from crawler.engine.throttle import Sample, ThrottlePolicy, ThrottleState
from crawler.settings import host_rules

__all__ = ["HostClock", "Politeness", "PolitenessPolicy"]


# --- politeness -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolitenessPolicy:
    """The politeness settings shared by every host (immutable; from ``Settings``).

    ``delay`` is the mean gap between request starts to one host, jittered 0.5x-1.5x. A
    robots ``Crawl-delay`` (capped at ``crawl_delay_max``) is stricter: one request at a time,
    the next starting the delay after the previous one *ended*. After
    ``n`` consecutive failures the host waits ``min(backoff_max, backoff_base * 2**(n-1))``.
    """

    per_host: int = 2
    delay: float = 0.0
    crawl_delay_max: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.per_host < 1:
            raise ValueError("per_host must be at least 1")
        if min(self.delay, self.crawl_delay_max, self.backoff_base, self.backoff_max) < 0:
            raise ValueError("politeness durations must not be negative")

    def backoff(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_base * 2.0 ** min(failures - 1, 30))


class HostClock:
    """When the next request to one host may start. Times are unix seconds passed in.

    A start is allowed when fewer than ``per_host`` requests are in flight and ``now`` has
    reached ``ready_at`` (pushed by the delay after each start, Retry-After and backoff).
    """

    __slots__ = (
        "crawl_delay",
        "failures",
        "in_flight",
        "max_in_flight",
        "policy",
        "ready_at",
        "rng",
        "state",
        "throttle",
    )

    def __init__(
        self,
        policy: PolitenessPolicy,
        rng: random.Random | None = None,
        throttle: ThrottlePolicy | None = None,
        state: ThrottleState | None = None,
    ) -> None:
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self.in_flight = 0
        self.max_in_flight = 0  # the most this run had in flight at once
        self.ready_at = 0.0
        self.failures = 0
        self.crawl_delay = 0.0
        self.throttle = throttle
        self.state = throttle.start(state) if throttle is not None else ThrottleState()

    def __repr__(self) -> str:
        return (
            f"<HostClock {self.in_flight}/{self.limit} busy ready_at={self.ready_at:.3f}"
            f" failures={self.failures} crawl_delay={self.crawl_delay}>"
        )

    @property
    def limit(self) -> int:
        """Requests allowed in flight now: ``per_host``, or less while the controller says
        so; one under a Crawl-delay."""
        if self.crawl_delay:
            return 1
        if self.throttle is None:
            return self.policy.per_host
        return min(self.policy.per_host, self.state.limit)

    def can_start(self, now: float) -> bool:
        return self.in_flight < self.limit and now >= self.ready_at

    def next_start(self, now: float) -> float:
        """The earliest time a start is allowed; ``inf`` while every slot is busy."""
        if self.in_flight >= self.limit:
            return math.inf
        return max(now, self.ready_at)

    def set_crawl_delay(self, seconds: float | None) -> None:
        """Apply robots.txt ``Crawl-delay`` as a floor (capped by ``crawl_delay_max``)."""
        self.crawl_delay = (
            0.0 if not seconds else min(max(seconds, 0.0), self.policy.crawl_delay_max)
        )

    def started(self, now: float) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        gap = self.policy.delay * self.rng.uniform(0.5, 1.5) if self.policy.delay else 0.0
        gap = max(gap, self.crawl_delay, self.state.gap)
        if gap:
            self.ready_at = max(self.ready_at, now + gap)

    def paced(self) -> bool:
        """Whether starts are spaced out (one at a time): a delay, Crawl-delay or throttle gap."""
        return bool(self.policy.delay or self.crawl_delay or self.state.gap)

    def finished(self, now: float, ok: bool, sample: Sample | None = None) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.crawl_delay:
            # Counted from the end (``now``: the engine saw the answer, after the request
            # ended), not from dispatch: a worker may send a Job late (a busy process, a
            # loaded machine), and a gap counted from dispatch would then shrink at the server.
            self.ready_at = max(self.ready_at, now + self.crawl_delay)
        if self.throttle is not None and sample is not None:
            self.state = self.throttle.update(self.state, sample, now)
        if ok:
            self.failures = 0
            return
        self.failures += 1
        self.ready_at = max(self.ready_at, now + self.policy.backoff(self.failures))

    def push(self, until: float) -> None:
        """No start before ``until`` (Retry-After, a 429/503)."""
        self.ready_at = max(self.ready_at, until)


class Politeness:
    """The clocks of every host, for the engine's scheduling loop.

    Memory is bounded by the number of hosts. A heap of ``(ready_at, host)`` entries, pushed
    whenever a clock moves into the future, answers "when does the next host become ready"
    without scanning every host; stale heap entries are dropped lazily.
    """

    def __init__(
        self,
        policy: PolitenessPolicy,
        rng: random.Random | None = None,
        *,
        host_settings: Mapping[str, Mapping[str, Any]] | None = None,
        autothrottle: bool = False,
        learned: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.policy = policy
        self.host_settings = dict(host_settings or {})
        self.autothrottle = autothrottle
        self._learned = dict(learned or {})  # host_state rows of earlier runs
        self._rng = rng if rng is not None else random.Random()
        self._clocks: dict[str, HostClock] = {}
        self._heap: list[tuple[float, str]] = []

    def policy_for(self, host: str) -> PolitenessPolicy:
        """The crawl's policy with the host's most specific ``host_settings`` entry applied."""
        rules = host_rules(self.host_settings, host) if self.host_settings else {}
        return replace(self.policy, **rules) if rules else self.policy

    def __repr__(self) -> str:
        busy = sum(c.in_flight for c in self._clocks.values())
        return f"<Politeness {len(self._clocks)} hosts {busy} in flight>"

    def clock(self, host: str) -> HostClock:
        c = self._clocks.get(host)
        if c is None:
            policy = self.policy_for(host)
            throttle = state = None
            if self.autothrottle:
                throttle = ThrottlePolicy(max_limit=policy.per_host)
                row = self._learned.get(host)
                if row is not None:
                    state = ThrottleState.restored(dict(row), policy.per_host)
            c = self._clocks[host] = HostClock(policy, self._rng, throttle, state)
        return c

    def learn(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        """Start hosts from what earlier runs learned (``host_state`` rows), before any clock."""
        self._learned.update(rows)

    def learned(self, now: float) -> dict[str, dict[str, Any]]:
        """What the controller knows per host now, as ``host_state`` rows."""
        return {
            host: {**c.state.as_row(), "updated_at": now}
            for host, c in self._clocks.items()
            if c.throttle is not None and c.state.baseline is not None
        }

    def report(self, limit: int = 50) -> dict[str, dict[str, Any]]:
        """Per-host lines for the run's stats: hosts with a ``host_settings`` rule or held
        below their ``per_host`` by the controller (at most ``limit``, by name)."""
        out: dict[str, dict[str, Any]] = {}
        for host in sorted(self._clocks):
            c = self._clocks[host]
            ruled = c.policy is not self.policy
            if not ruled and c.limit >= c.policy.per_host:
                continue
            out[host] = {
                "per_host": c.policy.per_host,
                "delay": c.policy.delay,
                "limit": c.limit,
                "max_in_flight": c.max_in_flight,
            }
            if len(out) >= limit:
                break
        return out

    def in_flight(self, host: str) -> int:
        c = self._clocks.get(host)
        return c.in_flight if c is not None else 0

    def ready(self, hosts: Iterable[str], now: float) -> list[str]:
        """The hosts among ``hosts`` that may start a request now, fewest busy first."""
        out = []
        for host in hosts:
            c = self._clocks.get(host)
            if c is None or c.can_start(now):
                out.append((c.in_flight if c is not None else 0, host))
        out.sort()
        return [host for _, host in out]

    def free_slots(self, host: str, now: float) -> int:
        """How many requests to ``host`` may start now (0 or ``per_host - in_flight``).

        With a delay set only one start is allowed at a time, since each start moves the clock.
        """
        c = self.clock(host)
        if not c.can_start(now):
            return 0
        if c.paced():
            return 1
        return c.limit - c.in_flight

    def started(self, host: str, now: float) -> None:
        c = self.clock(host)
        c.started(now)
        self._note(host, c, now)

    def finished(self, host: str, now: float, ok: bool, sample: Sample | None = None) -> None:
        c = self.clock(host)
        c.finished(now, ok, sample)
        self._note(host, c, now)

    def push(self, host: str, until: float) -> None:
        c = self.clock(host)
        c.push(until)
        heapq.heappush(self._heap, (c.ready_at, host))

    def set_crawl_delay(self, host: str, seconds: float | None) -> None:
        self.clock(host).set_crawl_delay(seconds)

    def next_ready(self, now: float) -> float | None:
        """The earliest future time a host waiting on its clock becomes ready, if any."""
        heap = self._heap
        while heap:
            at, host = heap[0]
            c = self._clocks.get(host)
            if c is None or at != c.ready_at or at <= now:
                heapq.heappop(heap)
                continue
            return at
        return None

    def _note(self, host: str, c: HostClock, now: float) -> None:
        if c.ready_at > now:
            heapq.heappush(self._heap, (c.ready_at, host))
