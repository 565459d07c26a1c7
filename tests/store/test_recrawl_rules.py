"""The recrawl rules as they run: which stored pages a new run queues again, with which
validators (on both backends, ``crawl_db``: a real SQLite file under tmp_path or a fresh
database on the tests' PostgreSQL), plus the worker's conditional headers and unchanged
detection (pure units).

A new run on an existing database does what ``crawl()`` does at its start (engine/loop.py):
open the store, put back what a crash left in flight, seed the start requests and sitemaps
(``Store.add``, a no-op for a known URL), then ``Store.schedule_recrawl``. A sitemap read
during the run adds its pages with their ``lastmod`` (``Store.add`` again). What ``take``
then hands out is what the run fetches; the validators on each ``Job`` are what the worker
turns into ``If-None-Match`` / ``If-Modified-Since`` (``conditional_headers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.messages import SITEMAP_CALLBACK, Job, NewRequest, Outcome, Page
from crawler.settings import SettingsError, resolve_settings
from crawler.store import Store
from crawler.store.postgres import Store as PgStore
from crawler.urls import canonicalize_url, fingerprint, url_host
from crawler.worker.conditional import conditional_headers, is_unchanged
from tests.kit.crawl import rows

NOW = 1_700_000_000.0
DAY = 86400.0
ETAG = '"abc123"'
LM = "Wed, 21 Oct 2015 07:28:00 GMT"
URL = canonicalize_url("http://example.com/p")
FP = fingerprint(URL)
HOST = url_host(URL)


def open_db(db: Path | str, **kw: Any) -> Store | PgStore:
    """The store of either backend, with the test's clock."""
    return PgStore(db, **kw) if isinstance(db, str) else Store(db, **kw)


def new_request(*, callback: str | None = None, lastmod: float | None = None) -> NewRequest:
    return NewRequest(FP, URL, HOST, callback=callback, lastmod=lastmod)


def fetched_page(
    at: float,
    etag: str | None,
    last_modified: str | None,
    body_hash: str | None,
    status: int = 200,
) -> Page:
    body = None if status == 304 else b"<html>"
    return Page(
        url=URL,
        status=status,
        headers="{}",
        content_type="text/html",
        size=len(body or b""),
        body=body,
        content_hash=body_hash,
        etag=etag,
        last_modified=last_modified,
        location=None,
        depth=0,
        fetched_at=at,
        elapsed_ms=1.0,
    )


@dataclass(frozen=True)
class History:
    """What an earlier run left for ``URL`` in the database."""

    state: str = "queued"  # queued (never taken), in_flight (a crash), done or failed
    fetched_at: float | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str = "h1"
    callback: str | None = None
    recrawl_after: float | None = None  # the earlier run's setting (it sets next_due)


def earlier_run(path: Path | str, history: History) -> None:
    with open_db(path, clock=lambda: history.fetched_at or NOW - DAY) as store:
        store.add([new_request(callback=history.callback)])
        if history.state == "queued":
            return
        (job,) = store.take(HOST, 1, NOW - 2 * 365 * DAY)
        if history.state == "done":
            assert history.fetched_at is not None
            page = fetched_page(
                history.fetched_at, history.etag, history.last_modified, history.content_hash
            )
            outcome = Outcome(job.fp, job.url, job.host, "done", page=page)
        elif history.state == "failed":
            outcome = Outcome(job.fp, job.url, job.host, "failed")
        else:
            assert history.state == "in_flight"
            return
        store.record([outcome], run_id=1, recrawl_after=history.recrawl_after)


def new_run(
    path: Path | str,
    *,
    recrawl_after: float | None,
    start: bool = False,
    sitemap_lastmod: float | None = None,
    fresh: bool = False,
) -> list[Job]:
    """Start a run at ``NOW`` as the engine does; what it hands out to fetch."""
    with open_db(path, fresh=fresh, clock=lambda: NOW) as store:
        store.reset_in_flight()
        start_fps = []
        if start:
            store.add([new_request()])
            start_fps.append(FP)
        store.schedule_recrawl(NOW, recrawl_after, start_fps, always_callbacks=(SITEMAP_CALLBACK,))
        if sitemap_lastmod is not None:
            store.add([new_request(lastmod=sitemap_lastmod)])
        return store.take(HOST, 10, NOW)


def done(fetched_at: float, **kw: object) -> History:
    return History(state="done", fetched_at=fetched_at, **kw)  # type: ignore[arg-type]


BOTH = {"If-None-Match": ETAG, "If-Modified-Since": LM}


@pytest.mark.parametrize(
    ("history", "run", "expected"),
    [
        # Never fetched (discovered, or taken by a run that crashed): due, nothing to validate.
        (History(), {"recrawl_after": None}, {}),
        (History(), {"recrawl_after": None, "start": True}, {}),
        (History(state="in_flight"), {"recrawl_after": None}, {}),
        # Start URLs: always, conditionally when validators are known.
        (done(NOW - 1), {"recrawl_after": None, "start": True}, {}),
        (
            done(NOW - 1, etag=ETAG),
            {"recrawl_after": None, "start": True},
            {"If-None-Match": ETAG},
        ),
        (
            done(NOW - 1, etag=ETAG, last_modified=LM),
            {"recrawl_after": None, "start": True},
            BOTH,
        ),
        # A start URL that failed last time is tried again too.
        (History(state="failed"), {"recrawl_after": None, "start": True}, {}),
        # Sitemaps (the reserved callback) are always read again, like start URLs.
        (
            done(NOW - 1, etag=ETAG, callback=SITEMAP_CALLBACK),
            {"recrawl_after": None},
            {"If-None-Match": ETAG},
        ),
        (History(state="failed", callback=SITEMAP_CALLBACK), {"recrawl_after": None}, {}),
        # recrawl_after=None: a fetched page is never due again (an interrupted run resumes).
        (done(NOW - 365 * DAY), {"recrawl_after": None}, None),
        # Older than recrawl_after: due; exactly recrawl_after old is not yet.
        (done(NOW - 2 * DAY, etag=ETAG), {"recrawl_after": DAY}, {"If-None-Match": ETAG}),
        (done(NOW - DAY - 1), {"recrawl_after": DAY}, {}),
        (done(NOW - DAY), {"recrawl_after": DAY}, None),
        (done(NOW - 5, last_modified=LM), {"recrawl_after": 0.0}, {"If-Modified-Since": LM}),
        # recrawl_after fetches stale pages again, not failed ones (only start URLs retry).
        (History(state="failed"), {"recrawl_after": 0.0}, None),
        # A sitemap lastmod newer than the last fetch makes a page due even when fresh;
        # still conditional, the server has the final word.
        (
            done(NOW - 60, last_modified=LM),
            {"recrawl_after": None, "sitemap_lastmod": NOW - 30},
            {"If-Modified-Since": LM},
        ),
        (done(NOW - 60), {"recrawl_after": None, "sitemap_lastmod": NOW - 90}, None),
        (done(NOW - 60), {"recrawl_after": None, "sitemap_lastmod": NOW - 60}, None),
        # Validators a server sent that cannot be sent back: kept, but the fetch is plain.
        (done(NOW - 1, etag="\r\n"), {"recrawl_after": None, "start": True}, {}),
        (
            done(NOW - 1, etag='"a"\r\nX-Injected: 1', last_modified=LM),
            {"recrawl_after": None, "start": True},
            {"If-Modified-Since": LM},
        ),
    ],
)
def test_which_pages_a_new_run_fetches(
    crawl_db: Callable[[str], Path | str],
    history: History,
    run: dict[str, object],
    expected: dict[str, str] | None,
) -> None:
    """``expected``: the conditional headers the fetch carries, or None when not due."""
    path = crawl_db("crawl")
    earlier_run(path, history)
    jobs = new_run(path, **run)  # type: ignore[arg-type]
    if expected is None:
        assert jobs == []
        return
    (job,) = jobs
    assert job.url == URL and job.attempt == 0
    # The frontier hands back what the server sent, verbatim; the worker cleans it.
    assert (job.etag, job.last_modified) == (
        (history.etag, history.last_modified) if history.state == "done" else (None, None)
    )
    assert job.content_hash == (history.content_hash if history.state == "done" else None)
    assert conditional_headers(job.etag, job.last_modified) == expected


def test_fresh_run_ignores_history(crawl_db: Callable[[str], Path | str]) -> None:
    path = crawl_db("crawl")
    earlier_run(path, done(NOW - 1, etag=ETAG, last_modified=LM))
    (job,) = new_run(path, recrawl_after=None, start=True, fresh=True)
    assert (job.etag, job.last_modified, job.content_hash) == (None, None, None)


@pytest.mark.parametrize(
    ("answer", "unchanged", "kept"),
    [
        # Unchanged (a 304, or a 2xx with the stored body hash): the validators the answer
        # lacks are kept, those it sends replace the old ones.
        (fetched_page(NOW, None, None, None, status=304), False, (ETAG, LM, "h1")),
        (fetched_page(NOW, '"new"', None, "h1"), True, ('"new"', LM, "h1")),
        # Changed: the answer's validators replace the old ones, missing ones included, so a
        # server that stopped sending an ETag is not asked with a stale one.
        (fetched_page(NOW, None, None, "h2"), False, (None, None, "h2")),
        (fetched_page(NOW, '"new"', None, "h2"), False, ('"new"', None, "h2")),
    ],
)
def test_validators_after_a_refetch(
    crawl_db: Callable[[str], Path | str],
    answer: Page,
    unchanged: bool,
    kept: tuple[str | None, ...],
) -> None:
    path = crawl_db("crawl")
    earlier_run(path, done(NOW - 1, etag=ETAG, last_modified=LM))
    (job,) = new_run(path, recrawl_after=None, start=True)
    stats = {"unchanged": 1} if unchanged else {}  # what the worker says for a same-hash 2xx
    with open_db(path, clock=lambda: NOW) as store:
        outcome = Outcome(job.fp, job.url, job.host, "done", page=answer, stats=stats)
        store.record([outcome], run_id=2)
    (again,) = new_run(path, recrawl_after=None, start=True)
    assert (again.etag, again.last_modified, again.content_hash) == kept


@pytest.mark.parametrize(("recrawl_after", "next_due"), [(None, None), (DAY, NOW - 5 + DAY)])
def test_next_due_is_kept_with_the_fetch(
    crawl_db: Callable[[str], Path | str], recrawl_after: float | None, next_due: float | None
) -> None:
    path = crawl_db("crawl")
    earlier_run(path, done(NOW - 5, recrawl_after=recrawl_after))
    assert rows(path, "SELECT fetched_at, next_due FROM frontier") == [(NOW - 5, next_due)]


def test_negative_recrawl_after_is_refused() -> None:
    with pytest.raises(SettingsError, match="recrawl_after"):
        resolve_settings(None, {"recrawl_after": -1})
    assert resolve_settings(None, {"recrawl_after": "1d"}).recrawl_after == DAY


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
