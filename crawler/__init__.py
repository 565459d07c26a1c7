"""crawler: a multiprocess web crawler with its own per-host HTTP connection pool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported after __version__: crawler.settings reads it for the default User-Agent.
from crawler.errors import CrawlerError
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider

if TYPE_CHECKING:
    from crawler.engine import RunResult, crawl

__all__ = [
    "CrawlerError",
    "Request",
    "Response",
    "RunResult",
    "Settings",
    "Spider",
    "__version__",
    "crawl",
]


def __getattr__(name: str) -> Any:
    # The engine is loaded on first use, not by ``import crawler``: a process that imports any
    # crawler module (``crawler --help``, the bench's server child) would otherwise pay for the
    # parent's loop and the multiprocess package. Type checkers see the import above.
    if name in ("crawl", "RunResult"):
        from crawler import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
