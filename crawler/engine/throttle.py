"""Adaptive per-host concurrency (``autothrottle``): how many requests a host gets now. No I/O.

How this works. Each host has a :class:`ThrottleState`, a frozen value; every answer from the
host is a :class:`Sample` (latency, status, error kind, when it started and ended) and
:meth:`ThrottlePolicy.update` returns the next state. Nothing here reads a clock or sleeps: the
engine passes ``now`` in, so the unit tests drive it with plain numbers.

- A host starts at ``limit == 1`` (or what an earlier run learned, ``ThrottleState.restored``).
- **Raise** (additive): after ``limit`` healthy answers in a row that started after the last
  change with ``limit`` requests in flight (``Sample.level``: a host that never fills its
  limit has not shown it copes with more), ``limit + 1``, up to the host's ``per_host``; not
  while a request to the host has been out for longer than ``rise`` times the baseline
  (``Sample.pending``: a slow answer may be on its way). Healthy means a 2xx-4xx other than
  429, no transport error, and a latency near the host's own baseline.
- **Cut** (multiplicative): 429, 503, a timeout or a reset halves the limit (at least 1) and
  widens an extra gap between request starts (doubling, from ``gap_min`` up to ``gap_max``);
  a latency rise (this answer and the smoothed latency both above ``rise * baseline + slack``)
  lowers the limit by one.
  Answers to requests that started before the last change describe the old limit, so they
  cannot cut again (no cascade from one burst of slow answers).
- The baseline is the host's typical latency when healthy: it follows healthy samples slowly
  and drops at once to a faster one. The extra gap shrinks by half on each healthy answer.

``delay``, robots ``Crawl-delay`` and ``Retry-After`` are applied by the clocks
(``crawler.engine.politeness``) as hard floors; this module only ever makes a host slower
than those, never faster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.messages import Outcome

__all__ = ["Sample", "ThrottlePolicy", "ThrottleState", "sample_of"]

# Transport errors that say "the host is overloaded", not "this URL is bad". A "proxy" failure
# (the proxy, not the host, failed) says nothing about the host.
OVERLOAD_KINDS = frozenset({"timeout", "reset", "connect"})
OVERLOAD_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Sample:
    """One answer from a host, as the controller sees it."""

    started: float  # unix time the request started (end minus its latency)
    latency: float  # seconds
    status: int | None = None  # None when no response arrived
    error: str | None = None  # a Failure kind ("timeout", "reset", ...) when none arrived
    level: int | None = None  # requests to the host in flight when it started, this included
    pending: float = 0.0  # age of the oldest request to the host still in flight, seconds

    @property
    def overload(self) -> bool:
        return self.status in OVERLOAD_STATUSES or self.error in OVERLOAD_KINDS


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """What the controller knows about one host (immutable; ``update`` returns a new one)."""

    limit: int = 1  # requests allowed in flight now
    baseline: float | None = None  # typical healthy latency, seconds
    smoothed: float | None = None  # recent latency (exponential average), seconds
    gap: float = 0.0  # extra seconds between request starts after overload
    streak: int = 0  # healthy answers since the last change
    changed_at: float = 0.0  # unix time of the last change of ``limit``

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.gap < 0:
            raise ValueError("gap must not be negative")

    def as_row(self) -> dict[str, Any]:
        """The columns stored in ``host_state`` for the next run."""
        return {"concurrency": self.limit, "baseline": self.baseline, "gap": self.gap}

    @classmethod
    def restored(cls, row: dict[str, Any], max_limit: int) -> ThrottleState:
        """The state an earlier run stored (limit clamped to today's ``per_host``)."""
        limit = max(1, min(int(row.get("concurrency") or 1), max_limit))
        baseline = row.get("baseline")
        gap = float(row.get("gap") or 0.0)
        return cls(limit=limit, baseline=None if baseline is None else float(baseline), gap=gap)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The controller's constants (immutable). ``max_limit`` is the host's ``per_host``."""

    max_limit: int = 2
    rise: float = 2.0  # smoothed latency above rise * baseline + slack is a latency rise
    slack: float = 0.05  # seconds; keeps noise on very fast hosts from reading as a rise
    alpha: float = 0.3  # weight of a new sample in the smoothed latency
    baseline_alpha: float = 0.05  # weight of a healthy sample in the baseline
    gap_min: float = 0.25
    gap_max: float = 30.0

    def __post_init__(self) -> None:
        if self.max_limit < 1:
            raise ValueError("max_limit must be at least 1")
        if self.rise < 1 or not 0 < self.alpha <= 1 or not 0 < self.baseline_alpha <= 1:
            raise ValueError("rise must be >= 1 and the weights in (0, 1]")

    def start(self, restored: ThrottleState | None = None) -> ThrottleState:
        if restored is None:
            return ThrottleState()
        return replace(restored, limit=min(restored.limit, self.max_limit), streak=0)

    def threshold(self, state: ThrottleState) -> float | None:
        """The smoothed latency above which the host counts as slowed down."""
        if state.baseline is None:
            return None
        return self.rise * state.baseline + self.slack

    def update(self, state: ThrottleState, sample: Sample, now: float) -> ThrottleState:
        """The state after ``sample`` arrived at ``now``."""
        fresh = sample.started >= state.changed_at  # sent under the current limit
        if sample.overload:
            if not fresh and state.gap:
                return state  # already cut for this burst
            gap = min(self.gap_max, max(self.gap_min, state.gap * 2))
            return replace(state, limit=max(1, state.limit // 2), gap=gap, streak=0, changed_at=now)
        if sample.status is None and sample.error is not None:
            return state  # a failure that says nothing about load (a bad URL, too large)
        a = self.alpha
        smoothed = (
            sample.latency
            if state.smoothed is None
            else a * sample.latency + (1 - a) * state.smoothed
        )
        limit_above = self.threshold(state)
        if limit_above is not None and smoothed > limit_above and sample.latency > limit_above:
            if not fresh:
                return replace(state, smoothed=smoothed, streak=0)
            return replace(
                state,
                limit=max(1, state.limit - 1),
                smoothed=smoothed,
                streak=0,
                changed_at=now,
            )
        if state.baseline is None or sample.latency < state.baseline:
            baseline = sample.latency
        else:
            baseline = state.baseline + self.baseline_alpha * (sample.latency - state.baseline)
        gap = state.gap / 2 if state.gap > self.gap_min / 8 else 0.0
        # Only an answer that ran with the whole limit in use shows the host copes with it.
        full = sample.level is None or sample.level >= state.limit
        streak = state.streak + 1 if fresh and full else state.streak
        limit, changed_at = state.limit, state.changed_at
        # A request still out well past the baseline may be a slow answer on its way: wait.
        waiting = state.baseline is not None and sample.pending > self.rise * baseline
        if streak >= limit and limit < self.max_limit and not waiting:
            limit, streak, changed_at = limit + 1, 0, now
        return ThrottleState(limit, baseline, smoothed, gap, streak, changed_at)


def sample_of(outcome: Outcome, now: float) -> Sample | None:
    """What one Outcome says about its host's load, or None when it says nothing."""
    page = outcome.page
    if page is not None:
        latency = page.elapsed_ms / 1000.0
        return Sample(now - latency, latency, status=page.status)
    if outcome.retry_status is not None or outcome.retry_error is not None:
        return Sample(now, 0.0, status=outcome.retry_status, error=outcome.retry_error)
    if outcome.failures:
        return Sample(now, 0.0, error=outcome.failures[0].kind)
    return None
