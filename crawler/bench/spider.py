"""The spiders ``crawler bench`` and ``benchmarks/crawl.py`` run, and the settings they run with.

Kept apart from the rest of ``crawler.bench`` (servers, site generator, measurement): a
measured crawl imports this module and nothing else of the harness (``crawler.bench.child``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crawler.spider import Request, Response, Spider

__all__ = ["BenchSpider", "DiscoverySpider", "bench_settings"]


class BenchSpider(Spider):
    """Starts at each host's first page, follows every link, one item per page.

    Pass the start pages as ``spider_kwargs={"start_urls": "URL URL ..."}``; the offsite
    filter then allows exactly the site's hosts.
    """

    name = "bench"

    def parse(self, response: Response) -> Iterator[dict[str, Any] | str | Request]:
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()


class DiscoverySpider(Spider):
    """For the memory benchmark: real pages (``/p/``) go first, the rest is only discovered.

    The site's pages also link to many URLs that are not served; those are queued at the
    default priority and the crawl is stopped by ``max_pages`` once the real pages are done,
    so the frontier ends up holding every discovered URL while few of them are fetched.
    """

    name = "bench-discovery"

    def parse(self, response: Response) -> Iterator[dict[str, Any] | str | Request]:
        yield {"url": response.url, "title": response.css("title::text").get()}
        for url in response.links():
            yield Request(url, priority=10) if "/p/" in url else url


def bench_settings(
    workers: int | None, per_host: int, *, max_runtime: float = 600.0, **extra: Any
) -> Any:
    """The settings a benchmark crawl uses: robots off, no delay, bodies not stored, and
    autothrottle off so every host gets ``per_host`` at once, like Scrapy's fixed
    CONCURRENT_REQUESTS_PER_DOMAIN (its AutoThrottle is off by default): the figure measures
    the engine, not how fast the controller trusts a loopback server under CPU load."""
    from crawler.settings import Settings

    values: dict[str, Any] = {
        "workers": workers or 0,
        "per_host": per_host,
        "delay": 0.0,
        "robots": False,
        "sitemaps": False,
        "store_body": False,  # Scrapy keeps no bodies either; items are what we compare
        "timeout": 15.0,
        "retries": 1,
        "max_runtime": max_runtime,
        "autothrottle": False,
    }
    values.update(extra)
    return Settings().replace(**values)
