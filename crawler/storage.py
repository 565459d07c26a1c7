"""The public import path of the crawl database: ``Store``, ``StorageError``, ``BatchStats``.

The code lives in the :mod:`crawler.store` package, split by responsibility (schema,
connection, frontier, results, runs); this module keeps ``from crawler.storage import ...``
working for the engine, the CLI, the tests and the benchmarks.
"""

from __future__ import annotations

from crawler.store import BatchStats, StorageError, Store

# Module constants from before the split, still importable from here (not in __all__).
from crawler.store.schema import SCHEMA_VERSION as SCHEMA_VERSION
from crawler.store.schema import STATES as STATES

__all__ = ["BatchStats", "StorageError", "Store"]
