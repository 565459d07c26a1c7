"""Seeding a run: the spider's start requests and sitemaps, turned into frontier rows.

A start value is a URL string or a :class:`~crawler.spider.Request`; each goes through
``crawler.urls.admit`` here, in the parent, the same rule a worker applies to a followed link
except the offsite filter (start URLs are where the spider says to go). A value that cannot be
used (not a string, an invalid URL, longer than ``max_url_length``) becomes an ``errors`` row
and no frontier entry. Also here: the spider's ``recrawl_after`` attribute as a
setting. Kept apart from the loop: this runs once, before the first dispatch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from crawler.engine.runstats import RunStats
from crawler.errors import SettingsError
from crawler.messages import SITEMAP_CALLBACK, Failure, NewRequest, Outcome
from crawler.settings import Settings, resolve_settings
from crawler.spider import Request, Spider
from crawler.urls import Admitted, Refusal, Refused, admit
from crawler.worker.callbacks import new_request

if TYPE_CHECKING:
    from crawler.store import CrawlStore

__all__ = ["recrawl_after", "seed", "sitemap_requests", "start_request"]

log = logging.getLogger("crawler")

_SEED_CHUNK = 1000


def seed(
    spider: Spider, store: CrawlStore, settings: Settings, stats: RunStats
) -> tuple[list[Outcome], list[int]]:
    """Queue the start requests and the spider's sitemaps (in chunks, as they come).

    Returns the errors rows of values that could not be used and the fingerprints of what was
    queued (start URLs are always fetched again, docs/cron.md). Whatever ``start_requests``
    raises propagates; what it yielded before stays queued.
    """
    max_len = settings.max_url_length
    batch: list[NewRequest] = []
    bad: list[Outcome] = []
    start_fps: list[int] = []
    for value in spider.start_requests():
        request = start_request(value, max_len, bad, stats)
        if request is not None:
            batch.append(request)
            start_fps.append(request.fp)
        if len(batch) >= _SEED_CHUNK:
            store.add(batch)
            batch = []
    for raw in _url_list(spider.sitemap_urls):
        request = start_request(raw, max_len, bad, stats)
        if request is not None:
            request = NewRequest(request.fp, request.url, request.host, callback=SITEMAP_CALLBACK)
            batch.append(request)
            start_fps.append(request.fp)
    if batch:
        store.add(batch)
    return bad, start_fps


def start_request(
    value: object, max_url_length: int, bad: list[Outcome], stats: RunStats
) -> NewRequest | None:
    """One start value as a frontier row; ``None`` (and an errors row in ``bad``) if unusable."""
    request = value if isinstance(value, Request) else None
    raw = request.url if request is not None else value
    if not isinstance(raw, str):
        stats.skipped_urls += 1
        bad.append(_url_error(repr(raw), f"start_requests yielded {type(value).__name__}"))
        return None
    method, body = ("GET", None) if request is None else (request.method, request.body)
    admitted = admit(raw, method=method, body=body, max_url_length=max_url_length)
    if isinstance(admitted, Refused):
        stats.skipped_urls += 1
        bad.append(_url_error(raw, admitted.detail))
        return None
    if request is None:
        return NewRequest(admitted.fp, admitted.url, admitted.host)
    return new_request(request, admitted)


def sitemap_requests(urls: Iterable[str], max_url_length: int) -> tuple[list[NewRequest], int]:
    """Sitemap URLs (from robots.txt) as frontier rows, and how many were invalid.

    One longer than ``max_url_length`` is left out without being counted: unlike every other
    path, which counts it in ``skipped_urls``. Kept as it was; aligning it is a behaviour
    change of its own.
    """
    requests = []
    skipped = 0
    for raw in urls:
        admitted = admit(raw, max_url_length=max_url_length)
        if isinstance(admitted, Admitted):
            requests.append(
                NewRequest(admitted.fp, admitted.url, admitted.host, callback=SITEMAP_CALLBACK)
            )
        elif admitted.reason is Refusal.INVALID:
            skipped += 1
    return requests, skipped


def recrawl_after(spider: Spider, settings: Settings) -> float | None:
    """``settings.recrawl_after``, else the spider's own ``recrawl_after`` attribute.

    ``crawl()`` callers that pass Settings directly still get the spider attribute (the CLI
    layers it under ``-s`` and ``--recrawl-after`` already).
    """
    if settings.recrawl_after is not None:
        return settings.recrawl_after
    value = spider.recrawl_after
    if value is None:
        return None
    try:
        return resolve_settings(None, {"recrawl_after": value}).recrawl_after
    except SettingsError as exc:
        log.warning("%s: ignoring recrawl_after: %s", spider.name, exc)
        return None


def _url_list(value: object) -> list[str]:
    """A spider's ``sitemap_urls``: a list, or one string of URLs (from ``-a``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _url_error(url: str, message: str) -> Outcome:
    """A start URL that could not be used: an errors row and no frontier entry."""
    return Outcome(0, url, "", "failed", failures=(Failure(url, "url", message),))
