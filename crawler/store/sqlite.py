"""``Store``: the SQLite backend of :class:`crawler.store.CrawlStore`, and the only code that
writes the crawl file.

How this works: one connection, owned by the parent process, writes in one ``BEGIN
IMMEDIATE`` transaction per ``add``/``take``/``requeue`` call and one per ``record`` batch,
so a kill -9 at any moment loses at most the batch being written. ``Store`` is composed of
parts that share that connection, one responsibility each::

    schema.py       the tables, indexes and version; migrations (only ever add)
    connection.py   opening, WAL, busy waits, transactions, StorageError, progress counts
    frontier.py     FrontierMixin: add, add_follows, take, requeue, give_up, recrawl, ...
    results.py      ResultsMixin: record() of pages, items, links, errors
    runs.py         RunsMixin: runs rows and stored robots.txt policies

The hot paths (frontier claims, batched inserts) are plain SQL; the cold ones (the schema,
new item columns, runs and robots rows) go through sqlite-utils.

One run per database at a time is not this package's business: the engine holds
:class:`crawler.engine.runlock.RunLock` (an ``flock`` on ``<db>.lock``) around the whole run.
"""

from __future__ import annotations

from crawler.store.results import ResultsMixin
from crawler.store.runs import RunsMixin

__all__ = ["Store"]


class Store(ResultsMixin, RunsMixin):
    """The crawl database at ``path``. Not thread-safe: one owner calls it."""
