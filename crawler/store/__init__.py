"""``Store``: the crawl's SQLite file, and the only code that writes it.

How this works: one connection, owned by the parent process, writes in one ``BEGIN
IMMEDIATE`` transaction per ``add``/``take``/``requeue`` call and one per ``record`` batch,
so a kill -9 at any moment loses at most the batch being written. ``Store`` is composed of
parts that share that connection, one responsibility each::

    schema.py       the tables, indexes and version; migrations (only ever add)
    connection.py   opening, WAL, busy waits, transactions, progress counts
    frontier.py     FrontierMixin: add, add_follows, take, requeue, give_up, recrawl, ...
    results.py      ResultsMixin: record() of pages, items, links, errors; BatchStats
    runs.py         RunsMixin: runs rows and stored robots.txt policies

One run per database at a time is not this package's business: the engine holds
:class:`crawler.engine.runlock.RunLock` (an ``flock`` on ``<db>.lock``) around the whole run.
:mod:`crawler.store` re-exports the public names and is the import path callers use.
"""

from __future__ import annotations

from crawler.store.results import BatchStats, ResultsMixin
from crawler.store.runs import RunsMixin

__all__ = ["BatchStats", "Store"]


class Store(ResultsMixin, RunsMixin):
    """The crawl database at ``path``. Not thread-safe: one owner calls it."""
