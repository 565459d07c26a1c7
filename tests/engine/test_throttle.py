"""The adaptive controller as a pure function: samples and times in, states out, no sleeping."""

from __future__ import annotations

from crawler.engine.politeness import Politeness, PolitenessPolicy
from crawler.engine.throttle import Sample, ThrottlePolicy, ThrottleState, sample_of
from crawler.messages import Outcome


def feed(policy: ThrottlePolicy, state: ThrottleState, now: float, latency: float, **kw: object):
    sample = Sample(started=now - latency, latency=latency, **kw)  # type: ignore[arg-type]
    return policy.update(state, sample, now)


def test_starts_at_one_and_raises_while_healthy_up_to_per_host() -> None:
    policy = ThrottlePolicy(max_limit=4)
    state = policy.start()
    assert state.limit == 1
    limits = []
    now = 100.0
    for _ in range(20):
        now += 0.1
        state = feed(policy, state, now, 0.02, status=200)
        limits.append(state.limit)
    assert limits[0] == 2  # one healthy answer at limit 1 raises it
    assert max(limits) == 4 and limits[-1] == 4  # never past per_host
    assert limits == sorted(limits)  # additive increase, never a cut while healthy


def test_503_and_429_halve_the_limit_and_widen_the_gap() -> None:
    policy = ThrottlePolicy(max_limit=8)
    state = ThrottleState(limit=8, baseline=0.02, smoothed=0.02, changed_at=0.0)
    state = feed(policy, state, 10.0, 0.02, status=503)
    assert (state.limit, state.gap) == (4, policy.gap_min)
    state = feed(policy, state, 11.0, 0.02, status=429)
    assert (state.limit, state.gap) == (2, policy.gap_min * 2)


def test_timeouts_and_resets_cut_but_a_bad_url_does_not() -> None:
    policy = ThrottlePolicy(max_limit=8)
    state = ThrottleState(limit=6, baseline=0.02)
    assert feed(policy, state, 10.0, 5.0, error="timeout").limit == 3
    assert feed(policy, state, 10.0, 0.0, error="reset").limit == 3
    assert feed(policy, state, 10.0, 0.0, error="too_large") == state


def test_a_latency_rise_lowers_the_limit_by_one_once_per_burst() -> None:
    policy = ThrottlePolicy(max_limit=8)
    state = ThrottleState(limit=4, baseline=0.02, smoothed=0.02, changed_at=50.0)
    state = feed(policy, state, 100.0, 0.5, status=200)
    assert state.limit == 3
    # More slow answers to requests sent before the cut describe the old limit: no cascade.
    for i in range(3):
        state = policy.update(
            state, Sample(started=99.6 + i * 0.01, latency=0.5, status=200), 100.1
        )
    assert state.limit == 3
    # Fast answers after the cut, while the smoothed latency decays, do not cut either.
    now = 100.2
    for _ in range(3):
        now += 0.03
        state = feed(policy, state, now, 0.02, status=200)
    assert state.limit >= 3


def test_noise_within_the_baseline_band_is_not_a_rise() -> None:
    policy = ThrottlePolicy(max_limit=4)
    state = ThrottleState(limit=4, baseline=0.001, smoothed=0.001)
    for i, latency in enumerate([0.001, 0.03, 0.002, 0.04, 0.001]):
        state = feed(policy, state, 10.0 + i, latency, status=200)
    assert state.limit == 4


def test_a_host_that_slows_past_three_in_flight_settles_at_three_or_four() -> None:
    """The issue's server in miniature: fast at <= 3 in flight, slow at 4, 503 beyond 5."""
    policy = ThrottlePolicy(max_limit=8)
    state = policy.start()
    now, seen = 0.0, []
    for _ in range(200):
        in_flight = state.limit
        status = 503 if in_flight > 5 else 200
        latency = 0.02 if in_flight <= 3 else 0.4
        now += latency
        state = feed(policy, state, now, latency, status=status)
        seen.append(in_flight)
    assert max(seen) <= 4
    assert set(seen[50:]) <= {3, 4}


def test_the_gap_closes_again_on_healthy_answers() -> None:
    policy = ThrottlePolicy(max_limit=2)
    state = ThrottleState(limit=1, baseline=0.02, gap=1.0)
    for i in range(12):
        state = feed(policy, state, 10.0 + i, 0.02, status=200)
    assert state.gap == 0.0


def test_restored_state_is_clamped_to_per_host() -> None:
    row = ThrottleState(limit=6, baseline=0.05, gap=0.5).as_row()
    state = ThrottlePolicy(max_limit=4).start(ThrottleState.restored(row, 4))
    assert (state.limit, state.baseline, state.gap) == (4, 0.05, 0.5)
    assert ThrottleState.restored({"concurrency": 0}, 4).limit == 1


def test_no_raise_while_a_slow_answer_is_on_its_way_or_the_limit_is_not_in_use() -> None:
    policy = ThrottlePolicy(max_limit=8)
    state = ThrottleState(limit=2, baseline=0.02, smoothed=0.02)
    waiting = state
    for i in range(4):
        waiting = feed(policy, waiting, 10.0 + i, 0.02, status=200, level=2, pending=0.4)
    assert waiting.limit == 2
    idle = state
    for i in range(4):
        idle = feed(policy, idle, 10.0 + i, 0.02, status=200, level=1)
    assert idle.limit == 2
    busy = feed(policy, feed(policy, state, 10.0, 0.02, status=200, level=2), 11.0, 0.02, level=2)
    assert busy.limit == 3


def test_a_learned_gap_spaces_the_next_runs_first_requests() -> None:
    # What a run learned on a host that answered 503 (a halved limit and a gap between starts)
    # is where the next run starts, before that host has answered anything.
    row = {"concurrency": 2, "baseline": 0.2, "gap": 1.5}
    p = Politeness(PolitenessPolicy(per_host=8), autothrottle=True, learned={"slow.test": row})
    assert p.free_slots("slow.test", 0.0) == 1  # paced: one start at a time
    p.started("slow.test", 0.0)
    assert p.clock("slow.test").next_start(0.0) == 1.5
    assert p.learned(9.0)["slow.test"]["gap"] == 1.5  # kept for the run after, too
    off = Politeness(PolitenessPolicy(per_host=8), autothrottle=False, learned={"slow.test": row})
    off.started("slow.test", 0.0)
    assert off.clock("slow.test").next_start(0.0) == 0.0


def test_a_proxy_failure_says_nothing_about_the_host() -> None:
    # A dead proxy must not slow the site behind it; a refused connection to the site does.
    policy = ThrottlePolicy(max_limit=8)
    state = ThrottleState(limit=4, baseline=0.05)
    proxy = Outcome(1, "http://a.test/", "a.test", "retry", retry_at=1.0, retry_error="proxy")
    sample = sample_of(proxy, 10.0)
    assert sample is not None and not sample.overload
    assert policy.update(state, sample, 10.0) == state
    site = Outcome(1, "http://a.test/", "a.test", "retry", retry_at=1.0, retry_error="connect")
    cut = sample_of(site, 10.0)
    assert cut is not None and policy.update(state, cut, 10.0).limit == 2
