"""The due-page rules, conditional headers, unchanged detection (pure units)."""

from __future__ import annotations

import pytest

from crawler.worker.conditional import (
    Decision,
    PageHistory,
    Reason,
    conditional_headers,
    decide,
    is_unchanged,
    next_due,
    recrawl_cutoff,
)

NOW = 1_700_000_000.0
DAY = 86400.0
ETAG = '"abc123"'
LM = "Wed, 21 Oct 2015 07:28:00 GMT"


def page(**kw: object) -> PageHistory:
    return PageHistory("http://example.com/p", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("history", "recrawl_after", "expected"),
    [
        # Never fetched: due, nothing to validate against.
        (page(), None, Decision(True, Reason.NEW)),
        (page(is_start=True), None, Decision(True, Reason.NEW)),
        # Start URLs: always, conditionally when validators are known.
        (page(fetched_at=NOW - 1, is_start=True), None, Decision(True, Reason.START)),
        (
            page(fetched_at=NOW - 1, is_start=True, etag=ETAG),
            None,
            Decision(True, Reason.START, conditional=True),
        ),
        # recrawl_after=None: a fetched page is never due again (an interrupted run resumes).
        (page(fetched_at=NOW - 365 * DAY), None, Decision(False, Reason.FRESH)),
        # Older than recrawl_after: due; exactly recrawl_after old is not yet (as Store's SQL).
        (page(fetched_at=NOW - 2 * DAY, etag=ETAG), DAY, Decision(True, Reason.STALE, True)),
        (page(fetched_at=NOW - DAY - 1), DAY, Decision(True, Reason.STALE)),
        (page(fetched_at=NOW - DAY), DAY, Decision(False, Reason.FRESH)),
        (page(fetched_at=NOW - 5, last_modified=LM), 0.0, Decision(True, Reason.STALE, True)),
        # A sitemap lastmod newer than the last fetch makes a page due even when fresh.
        (
            page(fetched_at=NOW - 60, sitemap_lastmod=NOW - 30, last_modified=LM),
            None,
            Decision(True, Reason.SITEMAP, True),
        ),
        (page(fetched_at=NOW - 60, sitemap_lastmod=NOW - 90), None, Decision(False, Reason.FRESH)),
        (page(fetched_at=NOW - 60, sitemap_lastmod=NOW - 60), None, Decision(False, Reason.FRESH)),
    ],
)
def test_decide(history: PageHistory, recrawl_after: float | None, expected: Decision) -> None:
    assert decide(history, now=NOW, recrawl_after=recrawl_after) == expected


def test_fresh_run_ignores_history() -> None:
    history = page(fetched_at=NOW - 1, etag=ETAG)
    assert decide(history, now=NOW, recrawl_after=None, fresh=True) == Decision(True, Reason.NEW)


def test_decision_headers() -> None:
    history = page(fetched_at=NOW - 2 * DAY, etag=ETAG, last_modified=LM)
    decision = decide(history, now=NOW, recrawl_after=DAY)
    assert decision.headers(history) == {"If-None-Match": ETAG, "If-Modified-Since": LM}
    assert Decision(True, Reason.NEW).headers(history) == {}


@pytest.mark.parametrize(
    ("etag", "last_modified", "expected"),
    [
        (None, None, {}),
        (ETAG, None, {"If-None-Match": ETAG}),
        ('W/"weak"', None, {"If-None-Match": 'W/"weak"'}),
        (None, LM, {"If-Modified-Since": LM}),
        (ETAG, LM, {"If-None-Match": ETAG, "If-Modified-Since": LM}),
        (" ", "", {}),
        ('"a"\r\nX-Injected: 1', LM, {"If-Modified-Since": LM}),  # never send a broken value
        ("\0", None, {}),
    ],
)
def test_conditional_headers(
    etag: str | None, last_modified: str | None, expected: dict[str, str]
) -> None:
    assert conditional_headers(etag, last_modified) == expected


def test_unusable_validators_do_not_make_a_fetch_conditional() -> None:
    history = page(fetched_at=NOW - 1, is_start=True, etag="\r\n")
    assert decide(history, now=NOW, recrawl_after=None) == Decision(True, Reason.START, False)


@pytest.mark.parametrize(
    ("status", "new", "old", "expected"),
    [
        (304, None, "h1", True),
        (304, None, None, True),
        (200, "h1", "h1", True),
        (203, "h1", "h1", True),
        (200, "h2", "h1", False),
        (200, "h1", None, False),
        (200, None, None, False),
        (404, "h1", "h1", False),  # an error page that happens to repeat is not "unchanged"
        (500, "h1", "h1", False),
    ],
)
def test_is_unchanged(status: int, new: str | None, old: str | None, expected: bool) -> None:
    assert is_unchanged(status, new, old) is expected


def test_cutoff_and_next_due() -> None:
    assert recrawl_cutoff(NOW, None) is None
    assert recrawl_cutoff(NOW, DAY) == NOW - DAY
    assert next_due(NOW, None) is None
    assert next_due(NOW, DAY) == NOW + DAY
    with pytest.raises(ValueError):
        recrawl_cutoff(NOW, -1)


def test_history_needs_a_url() -> None:
    with pytest.raises(ValueError):
        PageHistory("")
