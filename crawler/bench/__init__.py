"""Benchmark support: a generated multi-host site, servers for it, and ``run_bench``."""

from __future__ import annotations

from crawler.bench.server import ServerError, SiteServer
from crawler.bench.site import SiteInfo, generate_site, pick_origins

__all__ = ["ServerError", "SiteInfo", "SiteServer", "generate_site", "pick_origins"]
