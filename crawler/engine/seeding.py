"""Seeding a run: the spider's start requests and sitemaps, turned into frontier rows.

A start value is a URL string or a :class:`~crawler.spider.Request`; each is canonicalized and
fingerprinted here, in the parent, the same way a worker treats a followed link. A value that
cannot be used (not a string, an invalid URL, longer than ``max_url_length``) becomes an
``errors`` row and no frontier entry. Also here: the spider's ``recrawl_after`` attribute as a
setting, and :class:`SpiderStartError` (re-exported by ``crawler.engine.loop``). Kept apart from
the loop: this runs once, before the first dispatch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from crawler.engine.runstats import RunStats
from crawler.engine.shutdown import EXIT_COULD_NOT_START
from crawler.messages import SITEMAP_CALLBACK, Failure, NewRequest, Outcome
from crawler.settings import Settings, SettingsError, resolve_settings
from crawler.spider import Request, Spider
from crawler.urls import InvalidURL, canonicalize_url, fingerprint, url_host
from crawler.worker.callbacks import new_request

if TYPE_CHECKING:
    from crawler.store import CrawlStore

__all__ = ["SpiderStartError", "recrawl_after", "seed", "sitemap_requests", "start_request"]

log = logging.getLogger("crawler")

_SEED_CHUNK = 1000


class SpiderStartError(Exception):
    """The spider's ``__init__`` or ``start_requests`` raised: the run could not start.

    The message is one line (``name: start_requests raised ValueError: ...``); the original
    exception is the ``__cause__`` and its traceback goes to the log at DEBUG.
    """

    exit_code = EXIT_COULD_NOT_START

    def __init__(self, spider: str, stage: str, exc: BaseException) -> None:
        self.spider = spider
        self.stage = stage
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        super().__init__(f"{spider}: {stage} raised {detail}")


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
    for raw in _url_list(getattr(spider, "sitemap_urls", None)):
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
    try:
        url = canonicalize_url(raw)
    except InvalidURL as exc:
        stats.skipped_urls += 1
        bad.append(_url_error(raw, str(exc)))
        return None
    if len(url) > max_url_length:
        stats.skipped_urls += 1
        bad.append(_url_error(raw, "longer than max_url_length"))
        return None
    if request is None:
        return NewRequest(fingerprint(url), url, url_host(url))
    return new_request(request, url, url_host(url))


def sitemap_requests(urls: Iterable[str], max_url_length: int) -> tuple[list[NewRequest], int]:
    """Sitemap URLs (from robots.txt) as frontier rows, and how many were unusable."""
    requests = []
    skipped = 0
    for raw in urls:
        try:
            url = canonicalize_url(raw)
        except InvalidURL:
            skipped += 1
            continue
        if len(url) <= max_url_length:
            requests.append(
                NewRequest(fingerprint(url), url, url_host(url), callback=SITEMAP_CALLBACK)
            )
    return requests, skipped


def recrawl_after(spider: Spider, settings: Settings) -> float | None:
    """``settings.recrawl_after``, else the spider's own ``recrawl_after`` attribute.

    ``crawl()`` callers that pass Settings directly still get the spider attribute (the CLI
    layers it under ``-s`` and ``--recrawl-after`` already).
    """
    if settings.recrawl_after is not None:
        return settings.recrawl_after
    value = getattr(spider, "recrawl_after", None)
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
