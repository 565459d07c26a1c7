"""Which stored pages a new run fetches again, and how it tells "unchanged" (pure policy).

How this works: a run on an existing database looks at each frontier entry's history
(:class:`PageHistory`) and :func:`decide` says whether it is due, why, and whether the fetch
can be conditional. The rules, in order:

1. never fetched (discovered, or interrupted before its fetch) -> due (``NEW``);
2. a start URL -> always due (``START``), so new links are found on every run;
3. a sitemap ``lastmod`` newer than the last fetch -> due (``SITEMAP``);
4. fetched before ``now - recrawl_after`` -> due (``STALE``); ``recrawl_after=None``
   (the default) means never, so an interrupted run simply resumes where it stopped;
5. otherwise not due (``FRESH``).

A due page with a known ETag or Last-Modified is fetched conditionally
(:func:`conditional_headers`); the answer counts as unchanged (:func:`is_unchanged`) for a
304 or for a 2xx body whose hash equals the stored one. An unchanged page keeps its stored
data and its callback is not run again.

``Store.schedule_recrawl`` applies rules 2 and 4 in SQL; :func:`recrawl_cutoff` is the
boundary it uses (``fetched_at < cutoff``). Rule 3 needs the sitemap's lastmod per URL, which
only exists while a sitemap is being read: the engine calls :func:`decide` for each sitemap
entry it already knows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Decision",
    "PageHistory",
    "Reason",
    "conditional_headers",
    "decide",
    "is_unchanged",
    "next_due",
    "recrawl_cutoff",
]


class Reason(enum.Enum):
    NEW = "never fetched"
    START = "start URL"
    SITEMAP = "sitemap lastmod newer than the last fetch"
    STALE = "fetched longer ago than recrawl_after"
    FRESH = "fetched recently enough"


@dataclass(frozen=True, slots=True)
class PageHistory:
    """What the store knows about one URL from earlier runs."""

    url: str
    fetched_at: float | None = None  # unix time of the last fetch; None: never fetched
    etag: str | None = None
    last_modified: str | None = None  # the server's Last-Modified header, verbatim
    content_hash: str | None = None
    is_start: bool = False
    sitemap_lastmod: float | None = None  # from a sitemap read in this run

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("PageHistory needs a url")


@dataclass(frozen=True, slots=True)
class Decision:
    due: bool
    reason: Reason
    conditional: bool = False  # send If-None-Match / If-Modified-Since

    def headers(self, page: PageHistory) -> dict[str, str]:
        """The validator headers for this fetch (empty when not conditional)."""
        return conditional_headers(page.etag, page.last_modified) if self.conditional else {}


def recrawl_cutoff(now: float, recrawl_after: float | None) -> float | None:
    """Pages fetched before this time are stale; None when recrawl is off."""
    if recrawl_after is None:
        return None
    if recrawl_after < 0:
        raise ValueError("recrawl_after must not be negative")
    return now - recrawl_after


def next_due(fetched_at: float, recrawl_after: float | None) -> float | None:
    """When a page fetched at ``fetched_at`` becomes due again (None: never)."""
    return None if recrawl_after is None else fetched_at + recrawl_after


def decide(
    page: PageHistory, *, now: float, recrawl_after: float | None, fresh: bool = False
) -> Decision:
    """Is ``page`` due in a run starting at ``now``? (``fresh``: history ignored, all due.)"""
    if fresh or page.fetched_at is None:
        return Decision(True, Reason.NEW)
    conditional = bool(_clean(page.etag) or _clean(page.last_modified))
    if page.is_start:
        return Decision(True, Reason.START, conditional)
    if page.sitemap_lastmod is not None and page.sitemap_lastmod > page.fetched_at:
        # The site says it changed: still conditional, the server has the final word.
        return Decision(True, Reason.SITEMAP, conditional)
    cutoff = recrawl_cutoff(now, recrawl_after)
    if cutoff is not None and page.fetched_at < cutoff:
        return Decision(True, Reason.STALE, conditional)
    return Decision(False, Reason.FRESH)


def _clean(value: str | None) -> str | None:
    """A validator we can send back: non-empty, one line, no NUL (it came from a server)."""
    if value is None:
        return None
    value = value.strip()
    if not value or any(c in value for c in "\r\n\0"):
        return None
    return value


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """``If-None-Match`` / ``If-Modified-Since`` from stored validators (RFC 9110 13.1).

    Both are sent when both are known: a server that understands ETags ignores
    If-Modified-Since when If-None-Match is present. Unusable values are left out.
    """
    headers: dict[str, str] = {}
    if tag := _clean(etag):
        headers["If-None-Match"] = tag
    if date := _clean(last_modified):
        headers["If-Modified-Since"] = date
    return headers


def is_unchanged(status: int, new_hash: str | None, old_hash: str | None) -> bool:
    """Did a refetch find the same page: a 304, or a 2xx body with the stored hash?"""
    if status == 304:
        return True
    return 200 <= status < 300 and new_hash is not None and new_hash == old_hash
