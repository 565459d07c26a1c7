"""Everything that knows the crawl database's schema, behind one small interface.

The engine talks to a :class:`CrawlStore` (``api.py``: what it may call, and what each call
guarantees) and gets one only from :func:`open_store`, which picks the backend from the
``--db`` target. SQLite is the embedded default (``sqlite.py``, over ``schema.py``,
``connection.py``, ``frontier.py``, ``results.py``, ``runs.py``); PostgreSQL is
``postgres/`` (a ``postgresql://`` target, the same tables and columns); the read-only paths of the
command line live here too: ``history.py`` (``crawler runs``/``stats``), ``export.py``
(``crawler export``) and ``verify.py`` (``crawler bench``'s check of a crawl).

Importing this package is cheap (no sqlite-utils until a database is opened), so the engine
imports it before it forks its workers.
"""

from __future__ import annotations

from crawler.store.api import BatchStats, CrawlStore, database_file, is_database_url, open_store
from crawler.store.schema import ROBOTS_COLUMNS
from crawler.store.sqlite import Store

__all__ = [
    "ROBOTS_COLUMNS",
    "BatchStats",
    "CrawlStore",
    "Store",
    "database_file",
    "is_database_url",
    "open_store",
]
