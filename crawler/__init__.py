"""crawler: a multiprocess web crawler with its own per-host HTTP connection pool."""

from __future__ import annotations

__version__ = "0.1.0"

# Imported after __version__: crawler.settings reads it for the default User-Agent.
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider

__all__ = ["Request", "Response", "Settings", "Spider", "__version__"]
