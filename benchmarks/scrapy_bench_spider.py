"""The Scrapy side of ``benchmarks/crawl.py``: the same crawl as ``BenchSpider``, in Scrapy.

Run by ``crawl.py`` as a subprocess (so its CPU and memory are measured on their own)::

    python benchmarks/scrapy_bench_spider.py --per-host 8 --feed out.jsonl URL [URL ...]

Settings are chosen to match our bench crawl: the same per-host concurrency (Scrapy's download
slots are per hostname, and every bench host has its own loopback address), a global limit
that never binds, robots.txt, cookies, the telnet console and AutoThrottle off, and one item
per page written to a JSON Lines feed (our engine writes one SQLite row per item).
``--discovery N`` is the memory benchmark's mode: links to ``/p/`` pages get priority 10, the
rest is only queued, and the crawl closes after N pages. A JSON summary is printed last.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response


class ScrapyBenchSpider(scrapy.Spider):
    name = "scrapy-bench"
    discovery = False
    same_host = False

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": response.url, "title": response.css("title::text").get()}
        for href in response.css("a::attr(href)").getall():
            if self.discovery:
                yield response.follow(href, priority=10 if "/p/" in href else 0)
            elif self.same_host:
                try:  # a real site has mailto: links, which Scrapy refuses with ValueError
                    yield response.follow(href)
                except ValueError:
                    continue
            else:
                yield response.follow(href)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start_urls", nargs="+")
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--feed", required=True, help="JSON Lines output path")
    parser.add_argument("--discovery", type=int, default=0, help="close after N pages")
    parser.add_argument(
        "--same-host", action="store_true", help="follow only links to the start URLs' hosts"
    )
    args = parser.parse_args()
    hosts = len(args.start_urls)
    settings: dict[str, Any] = {
        "CONCURRENT_REQUESTS": args.per_host * hosts,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.per_host,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "AUTOTHROTTLE_ENABLED": False,
        "RETRY_TIMES": 1,
        "DOWNLOAD_TIMEOUT": 15,
        "LOG_LEVEL": "WARNING",
        "FEEDS": {args.feed: {"format": "jsonlines", "encoding": "utf8", "overwrite": True}},
    }
    if args.discovery:
        settings["CLOSESPIDER_PAGECOUNT"] = args.discovery
    stats: dict[str, Any] = {}
    process = CrawlerProcess(settings=settings)
    crawler = process.create_crawler(ScrapyBenchSpider)
    ScrapyBenchSpider.discovery = bool(args.discovery)
    ScrapyBenchSpider.start_urls = args.start_urls
    if args.same_host:  # a real site links out; our BenchSpider's offsite filter does the same
        ScrapyBenchSpider.same_host = True
        ScrapyBenchSpider.allowed_domains = sorted(
            {urlsplit(u).hostname or "" for u in args.start_urls}
        )
    process.crawl(crawler)
    started = time.perf_counter()
    process.start()
    seconds = time.perf_counter() - started
    if crawler.stats is not None:
        stats = crawler.stats.get_stats()
    print(
        json.dumps(
            {
                "crawl_seconds": seconds,
                "responses": stats.get("response_received_count", 0),
                "items": stats.get("item_scraped_count", 0),
                "requests": stats.get("downloader/request_count", 0),
                "discovered": stats.get("scheduler/enqueued", 0),
                "filtered": stats.get("dupefilter/filtered", 0),
                "finish_reason": str(stats.get("finish_reason")),
            }
        )
    )


if __name__ == "__main__":
    main()
