"""``crawler bench``: a generated multi-host site on loopback, crawled for real.

The deterministic site generator (:func:`generate_site`, :func:`pick_origins`), the servers
(:class:`SiteServer`: nginx when it is installed, else an in-memory asyncio server in a child
process), resource measurement, and :func:`run_bench`, which ties them to
``crawler.engine.crawl``.

The names below are loaded on first use, not by ``import crawler.bench``: a measured crawl
imports ``crawler.bench.spider`` (which runs this file first), and the harness's servers,
subprocess handling and database checks would otherwise be resident in its parent and in
every worker it forks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "BenchSpider": "spider",
    "SiteInfo": "site",
    "SiteServer": "server",
    "generate_site": "site",
    "pick_origins": "site",
    "run_bench": "run",
    "verify_crawl": "run",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"crawler.bench.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
