"""The two reserved callbacks a worker handles itself instead of calling a spider method.

``__robots__`` (``ROBOTS_CALLBACK``): fetch the host's robots.txt through the host's own pool,
so it counts toward ``per_host``; the policy goes back in ``Outcome.robots`` and the parent
applies it. ``__sitemap__`` (``SITEMAP_CALLBACK``): parse a sitemap (up to 50 MiB, the
protocol's cap) and answer with what it lists as ``NewRequest``s: child sitemaps, or pages
(with their ``lastmod``) for the spider's ``sitemap_callback``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crawler.errors import SitemapError
from crawler.messages import SITEMAP_CALLBACK, Failure, Job, NewRequest, Outcome, Page
from crawler.robots import fetch_robots
from crawler.sitemap import parse_sitemap
from crawler.urls import Admitted, Refusal, admit
from crawler.worker.outcomes import done

__all__ = ["robots_outcome", "sitemap_outcome"]


def robots_outcome(
    job: Job,
    pool: Any,
    user_agent: str,
    timeout: Any,
    crawl_delay_max: float,
    clock: Callable[[], float],
) -> Outcome:
    """Fetch the host's robots.txt through ``pool`` (the host's own): the policy as an Outcome."""
    policy = fetch_robots(
        pool,
        job.url,
        user_agent=user_agent,
        timeout=timeout,
        crawl_delay_max=crawl_delay_max,
        now=clock,
    )
    return Outcome(job.fp, job.url, job.host, "done", robots=policy)


def sitemap_outcome(
    job: Job,
    body: bytes,
    page: Page,
    failures: list[Failure],
    cut: str | None,
    *,
    max_url_length: int,
    allows: Callable[[str], bool],
    callback: str | None,
) -> Outcome:
    """Queue what a sitemap lists: child sitemaps, or pages for the spider's ``callback``."""
    if cut is not None:  # a cut sitemap is not parsed: a partial list could mislead
        return done(job, page, failures)
    try:
        sitemap = parse_sitemap(body)
    except SitemapError as exc:
        failures.append(Failure(job.url, "sitemap", str(exc)))
        return done(job, page, failures)
    if sitemap.truncated:
        failures.append(
            Failure(job.url, "sitemap", f"more than {len(sitemap.entries)} URLs; rest ignored")
        )
    index = sitemap.kind == "index"
    skipped = sitemap.skipped
    requests: list[NewRequest] = []
    seen: set[int] = set()
    # Child sitemaps may live elsewhere (robots.txt cross-submission); pages obey the
    # spider's offsite filter like links do.
    offsite_filter = None if index else allows
    for entry in sitemap.entries:
        admitted = admit(entry.loc, max_url_length=max_url_length, allows=offsite_filter, seen=seen)
        if isinstance(admitted, Admitted):
            requests.append(
                NewRequest(
                    fp=admitted.fp,
                    url=admitted.url,
                    host=admitted.host,
                    callback=SITEMAP_CALLBACK if index else callback,
                    depth=job.depth,
                    lastmod=None if index else entry.lastmod,
                )
            )
        elif admitted.reason is not Refusal.DUPLICATE:
            skipped += 1
    return done(
        job,
        page,
        failures,
        requests=tuple(requests),
        skipped_urls=skipped,
        stats={"sitemap_urls": len(requests)},
    )
