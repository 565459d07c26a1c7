"""The spiders ``crawler bench`` and ``benchmarks/crawl.py`` run against the generated site."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crawler.spider import Request, Response, Spider

__all__ = ["BenchSpider", "DiscoverySpider"]


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
