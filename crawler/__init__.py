"""crawler: a multiprocess web crawler with its own per-host HTTP connection pool."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
