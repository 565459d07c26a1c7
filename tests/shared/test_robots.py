"""crawler.robots: the RFC 9309 status rules, parsing limits, the cache (pure units)."""

from __future__ import annotations

import pickle

import pytest

from crawler.robots import (
    MAX_ROBOTS_SIZE,
    ROBOTS_TTL,
    UNREACHABLE_RETRY,
    RobotsCache,
    RobotsPolicy,
    robots_url,
)

UA = "crawler/0.1.0"
T0 = 1_700_000_000.0

RULES = b"""\
User-agent: crawler
Disallow: /private
Allow: /private/open
Crawl-delay: 2.5

User-agent: *
Disallow: /

Sitemap: http://example.com/sitemap.xml
Sitemap: http://example.com/news.xml.gz
Sitemap: http://example.com/sitemap.xml
"""


def policy(status: int | None, body: bytes | None = RULES, **kw: float) -> RobotsPolicy:
    return RobotsPolicy.from_response(
        status,
        body,
        fetched_at=kw.get("fetched_at", T0),
        user_agent=str(kw.get("ua", UA)),
        crawl_delay_max=kw.get("cap", 30.0),
    )


@pytest.mark.parametrize(
    ("status", "kind", "allowed", "retry"),
    [
        (200, "rules", False, False),
        (204, "rules", True, False),  # an empty 2xx body: no rules, everything allowed
        (301, "allow_all", True, False),  # more than five hops reached the policy: unavailable
        (400, "allow_all", True, False),
        (401, "allow_all", True, False),  # RFC 9309: every 4xx is "unavailable"
        (403, "allow_all", True, False),
        (404, "allow_all", True, False),
        (410, "allow_all", True, False),
        (429, "disallow_all", False, True),  # rate limited: wait, do not read as "no rules"
        (500, "disallow_all", False, True),
        (503, "disallow_all", False, True),
        (599, "disallow_all", False, True),
        (None, "disallow_all", False, True),  # unreachable: refused, timeout, DNS
        (100, "disallow_all", False, True),  # nonsense statuses count as unreachable
        (600, "disallow_all", False, True),
    ],
)
def test_status_rules(status: int | None, kind: str, allowed: bool, retry: bool) -> None:
    body = b"" if status == 204 else RULES
    p = policy(status, body)
    assert p.kind == kind
    assert p.allows("http://example.com/private/x") is allowed
    assert p.unreachable is retry
    if retry:
        assert p.retry_at == T0 + UNREACHABLE_RETRY
        assert p.expires_at == p.retry_at
    else:
        assert p.retry_at is None
        assert p.expires_at == T0 + ROBOTS_TTL


def test_rules_for_our_product_token() -> None:
    p = policy(200)
    assert p.allows("http://example.com/")
    assert p.allows("http://example.com/public/page?q=1")
    assert not p.allows("http://example.com/private")
    assert not p.allows("http://example.com/private/secret")
    assert p.allows("http://example.com/private/open/doc")
    # Another agent falls into the "*" group, which disallows everything.
    other = policy(200, ua="otherbot/1.0")
    assert not other.allows("http://example.com/public")


def test_robots_txt_itself_is_always_allowed() -> None:
    p = policy(200, b"User-agent: *\nDisallow: /\n")
    assert not p.allows("http://example.com/index.html")
    assert p.allows("http://example.com/robots.txt")


@pytest.mark.parametrize(
    ("body", "cap", "expected"),
    [
        (RULES, 30.0, 2.5),
        (RULES, 1.0, 1.0),  # capped by crawl_delay_max
        (b"User-agent: *\nCrawl-delay: 120\n", 30.0, 30.0),
        (b"User-agent: *\nDisallow: /x\n", 30.0, None),
        (b"User-agent: *\nCrawl-delay: -3\n", 30.0, None),
        (b"User-agent: *\nCrawl-delay: soon\n", 30.0, None),
    ],
)
def test_crawl_delay(body: bytes, cap: float, expected: float | None) -> None:
    assert policy(200, body, cap=cap).crawl_delay == expected


def test_no_crawl_delay_or_sitemaps_without_rules() -> None:
    for status in (404, 503, None):
        p = policy(status)
        assert p.crawl_delay is None
        assert p.sitemaps == ()


def test_sitemaps_in_order_without_duplicates() -> None:
    assert policy(200).sitemaps == (
        "http://example.com/sitemap.xml",
        "http://example.com/news.xml.gz",
    )


def test_bom_and_non_utf8_bodies_are_decoded_leniently() -> None:
    p = policy(200, b"\xef\xbb\xbfUser-agent: *\nDisallow: /caf\xe9\nDisallow: /private\n")
    assert not p.allows("http://example.com/private")
    assert p.allows("http://example.com/public")
    assert "\ufffd" in p.text  # the Latin-1 byte was replaced, not fatal


def test_body_is_cut_at_the_size_limit_on_a_line_break() -> None:
    filler = b"# " + b"x" * 98 + b"\n"  # 101-byte comment lines
    head = b"User-agent: *\nDisallow: /early\n"
    body = head + filler * (MAX_ROBOTS_SIZE // len(filler))
    # This rule straddles the 500 KiB limit: it must be dropped whole, not cut to "/la".
    body = body[: MAX_ROBOTS_SIZE - 5] + b"\nDisallow: /late\n" + b"Disallow: /\n"
    p = policy(200, body)
    assert len(p.text.encode()) <= MAX_ROBOTS_SIZE
    assert not p.allows("http://example.com/early")
    assert p.allows("http://example.com/la")
    assert p.allows("http://example.com/late")  # past the limit: ignored
    assert p.allows("http://example.com/other")


def test_policy_is_plain_data_across_processes() -> None:
    p = policy(200)
    q = pickle.loads(pickle.dumps(p))
    assert q == p
    assert not q.allows("http://example.com/private/x")
    assert q.crawl_delay == 2.5


def test_policy_is_frozen_and_validated() -> None:
    p = policy(404)
    with pytest.raises(AttributeError):
        p.kind = "rules"  # type: ignore[misc]
    with pytest.raises(ValueError, match="kind"):
        RobotsPolicy("maybe", None, T0, T0, UA, 30.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_agent"):
        policy(200, ua=" ")
    with pytest.raises(ValueError, match="crawl_delay_max"):
        policy(200, cap=-1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a/b?c#d", "http://example.com/robots.txt"),
        ("https://example.com:8443/", "https://example.com:8443/robots.txt"),
        ("http://user:pw@example.com/x", "http://example.com/robots.txt"),
    ],
)
def test_robots_url(url: str, expected: str) -> None:
    assert robots_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://example.com/", "/relative", "mailto:a@b"])
def test_robots_url_rejects_non_http(url: str) -> None:
    with pytest.raises(ValueError):
        robots_url(url)


def test_cache_expires_after_24_hours() -> None:
    cache = RobotsCache()
    assert cache.get("example.com", T0) is None
    p = cache.put("example.com", policy(200))
    assert cache.get("example.com", T0 + ROBOTS_TTL - 1) is p
    assert cache.get("example.com", T0 + ROBOTS_TTL) is None
    assert cache.get("other.com", T0) is None


def test_cache_retries_an_unreachable_host_after_a_few_minutes() -> None:
    cache = RobotsCache()
    cache.put("h", policy(503))
    assert cache.get("h", T0 + UNREACHABLE_RETRY - 1) is not None
    assert cache.get("h", T0 + UNREACHABLE_RETRY) is None
    assert repr(cache) == "<RobotsCache 1 hosts 1 unreachable>"


def test_cache_keeps_last_good_rules_while_unreachable() -> None:
    cache = RobotsCache()
    cache.put("h", policy(200))
    later = T0 + ROBOTS_TTL + 10
    kept = cache.put("h", policy(None, fetched_at=later))
    assert kept.kind == "rules"
    assert kept.allows("http://h/public") and not kept.allows("http://h/private")
    assert kept.retry_at == later + UNREACHABLE_RETRY
    assert cache.get("h", later + 1) is kept
    # After 30 days without a good fetch, unreachable means disallow again.
    much_later = T0 + 31 * 86400
    assert cache.put("h", policy(None, fetched_at=much_later)).kind == "disallow_all"


def test_cache_does_not_keep_rules_over_a_4xx() -> None:
    cache = RobotsCache()
    cache.put("h", policy(200))
    assert cache.put("h", policy(404, fetched_at=T0 + 10)).kind == "allow_all"
    assert list(cache) == ["h"] and len(cache) == 1


def test_gate_asks_an_unreachable_host_again_in_the_next_run() -> None:
    from crawler.engine.robotsgate import Gate, RobotsGate

    first = RobotsGate(UA, 30.0)
    first.cache.put("down", policy(503))
    first.cache.put("flaky", policy(200))
    stale = first.cache.put("flaky", policy(None, fetched_at=T0 + ROBOTS_TTL + 10))
    first.cache.put("up", policy(200))
    stored = [(h, RobotsGate.row(first.cache.get(h, T0 + 1) or stale)) for h in first.cache]

    # The next run starts seconds later, well within the retry interval.
    now = T0 + ROBOTS_TTL + 20
    gate = RobotsGate(UA, 30.0)
    gate.load(stored)
    assert gate.state("down", now)[0] is Gate.FETCH  # asked again at once
    assert gate.state("flaky", now)[0] is Gate.FETCH
    assert gate.state("up", T0 + 20)[0] is Gate.GO  # a good policy is still reused
    # Still down: the last good copy stays in force (the stale fallback survives the restart).
    job = gate.begin("flaky", "http://flaky/x")
    _, kept = gate.finish(job.fp, policy(None, fetched_at=now), now)
    assert kept.kind == "rules" and kept.allows("http://h/public")
    assert not kept.allows("http://h/private")
