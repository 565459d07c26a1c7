"""Pure units of the engine's politeness clocks (crawler.engine.politeness): per-host slots,
jittered delay, the robots Crawl-delay floor, failure backoff and the fewest-busy-first order.
Every method takes ``now``, so these tests drive the clocks with plain numbers."""

from __future__ import annotations

import math
import random

import pytest

from crawler.engine.politeness import HostClock, Politeness, PolitenessPolicy


class FixedRandom(random.Random):
    """uniform() always returns the same point of its range (0: low end, 1: high end)."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def test_clock_per_host_limit() -> None:
    c = HostClock(PolitenessPolicy(per_host=2))
    assert c.can_start(0.0)
    c.started(0.0)
    c.started(0.0)
    assert not c.can_start(0.0)
    assert c.next_start(0.0) == math.inf
    c.finished(1.0, ok=True)
    assert c.can_start(1.0)
    assert c.next_start(1.0) == 1.0
    assert "1/2 busy" in repr(c)


@pytest.mark.parametrize(("at", "gap"), [(0.0, 1.0), (0.5, 2.0), (1.0, 3.0)])
def test_clock_delay_jitter(at: float, gap: float) -> None:
    c = HostClock(PolitenessPolicy(per_host=5, delay=2.0), FixedRandom(at))
    c.started(10.0)
    assert not c.can_start(10.0 + gap - 0.001)
    assert c.can_start(10.0 + gap)
    assert c.next_start(10.0) == 10.0 + gap


def test_clock_crawl_delay_is_a_capped_floor() -> None:
    c = HostClock(PolitenessPolicy(delay=1.0, crawl_delay_max=5.0), FixedRandom(0.0))
    c.set_crawl_delay(3.0)
    c.started(0.0)
    c.finished(0.0, ok=True)
    assert c.next_start(0.0) == 3.0  # the floor beats the jittered 0.5 s
    c.set_crawl_delay(100.0)
    c.started(3.0)
    c.finished(3.0, ok=True)
    assert c.next_start(3.0) == 8.0  # capped at crawl_delay_max
    c.set_crawl_delay(None)
    assert c.crawl_delay == 0.0


def test_clock_crawl_delay_is_one_at_a_time_counted_from_the_end() -> None:
    c = HostClock(PolitenessPolicy(per_host=8), FixedRandom(0.0))
    c.set_crawl_delay(2.0)
    assert c.limit == 1
    c.started(0.0)
    assert c.next_start(5.0) == math.inf  # still in flight: no second request, however late
    c.finished(4.5, ok=True)  # a slow answer (or a Job its worker sent late)
    assert not c.can_start(6.4)
    assert c.next_start(4.5) == 6.5  # the delay after the end, not after the start
    c.set_crawl_delay(None)
    assert c.limit == 8


def test_clock_push_and_backoff() -> None:
    policy = PolitenessPolicy(per_host=4, backoff_base=1.0, backoff_max=5.0)
    c = HostClock(policy)
    c.push(50.0)
    assert c.next_start(0.0) == 50.0
    c.push(10.0)  # never moves backwards
    assert c.next_start(0.0) == 50.0
    c = HostClock(policy)
    waits = []
    for _ in range(5):
        c.started(100.0)
        c.finished(100.0, ok=False)
        waits.append(c.next_start(100.0) - 100.0)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    c.started(200.0)
    c.finished(200.0, ok=True)
    assert c.failures == 0
    assert c.can_start(200.0)


def test_policy_validates() -> None:
    with pytest.raises(ValueError):
        PolitenessPolicy(per_host=0)
    with pytest.raises(ValueError):
        PolitenessPolicy(delay=-1)


def test_politeness_ready_fewest_busy_first_and_next_ready() -> None:
    p = Politeness(PolitenessPolicy(per_host=2, delay=1.0), FixedRandom(0.5))
    p.started("a", 0.0)
    assert p.ready(["a", "b", "c"], 0.0) == ["b", "c"]
    p.started("b", 0.0)
    assert p.ready(["a", "b", "c"], 1.0) == ["c", "a", "b"]
    p.started("c", 1.0)
    assert p.ready(["a", "b", "c"], 1.5) == ["a", "b"]
    assert p.next_ready(1.5) == 2.0
    p.push("a", 30.0)
    assert p.next_ready(2.5) == 30.0
    assert p.free_slots("a", 2.5) == 0
    assert p.free_slots("b", 2.5) == 1
    p.finished("a", 31.0, ok=True)
    assert p.next_ready(31.0) is None
    assert p.in_flight("a") == 0
    assert "3 hosts 2 in flight" in repr(p)


def test_politeness_free_slots_without_delay() -> None:
    p = Politeness(PolitenessPolicy(per_host=3))
    assert p.free_slots("a", 0.0) == 3
    p.started("a", 0.0)
    assert p.free_slots("a", 0.0) == 2
    p.finished("a", 0.0, ok=True)
    assert p.in_flight("a") == 0
