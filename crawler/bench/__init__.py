"""``crawler bench``: a generated multi-host site on loopback, crawled for real.

The deterministic site generator (:func:`generate_site`, :func:`pick_origins`), the servers
(:class:`SiteServer`: nginx when it is installed, else an in-memory asyncio server in a child
process), resource measurement, and :func:`run_bench`, which ties them to
``crawler.engine.crawl``.
"""

from __future__ import annotations

from crawler.bench.run import run_bench, verify_crawl
from crawler.bench.server import SiteServer
from crawler.bench.site import SiteInfo, generate_site, pick_origins
from crawler.bench.spider import BenchSpider

__all__ = [
    "BenchSpider",
    "SiteInfo",
    "SiteServer",
    "generate_site",
    "pick_origins",
    "run_bench",
    "verify_crawl",
]
