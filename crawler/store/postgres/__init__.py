"""``Store``: the PostgreSQL backend of :class:`crawler.store.CrawlStore` (issue 10).

How this works: the same tables and column names as the SQLite backend (pages, items, links,
errors, runs, frontier, robots), so a user's SQL works on either, over one psycopg 3
connection owned by the parent process. Each ``add``/``take``/``requeue`` call and each
``record`` batch is one transaction, as in SQLite, so a kill -9 loses at most the batch being
written; the round trips are what costs here, so the hot paths send a batch as few
statements: one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` per batch
of new frontier rows (deduplicated by ``fp`` before it is sent), one ``UPDATE ... RETURNING``
per ``take`` (``FOR UPDATE SKIP LOCKED``, so two nodes never claim the same row), and
psycopg's pipelined ``executemany`` for the per-outcome writes. Parts, one responsibility each::

    schema.py       the DDL (CREATE ... IF NOT EXISTS), under an advisory lock
    connection.py   connecting, transactions, StorageError (no password in it), counts
    frontier.py     add, take, requeue, give_up, recrawl, ...
    results.py      record() of pages, items, links, errors
    runs.py         runs rows and stored robots.txt policies

Importing this package imports psycopg: :func:`crawler.store.open_store` imports it only for
a ``postgresql://`` target.
"""

from __future__ import annotations

from crawler.store.postgres.results import ResultsMixin
from crawler.store.postgres.runs import RunsMixin

__all__ = ["Store"]


class Store(ResultsMixin, RunsMixin):
    """The crawl database at a ``postgresql://`` URL. Not thread-safe: one owner calls it."""
