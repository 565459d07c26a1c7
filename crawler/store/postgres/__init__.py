"""``Store``: the PostgreSQL backend of :class:`crawler.store.CrawlStore` (issue 10).

How this works: the same tables and column names as the SQLite backend (pages, items, links,
errors, runs, frontier, robots, tracked_items, item_versions, item_changes, host_state,
cookies), so a user's SQL works on either, over one psycopg 3 connection owned by the parent
process. Each ``add``/``take``/``requeue`` call and each
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
    items.py        the item history record() keeps for a spider with item_key
    runs.py         runs, robots.txt policies, autothrottle's host state, cookies
    cluster.py      nodes joining a run, host leases, takeover (several nodes, one run)
    read.py         the command line's read-only paths (runs, export, changes)

A connection the server drops (a restart, a network cut) is opened again with backoff for at
most ``db_retry`` seconds and the call repeated (every write is keyed, so repeating one is
safe); past that the call raises ``StorageError`` and the run exits 3.

Importing this package imports psycopg: :func:`crawler.store.open_store` imports it only for
a ``postgresql://`` target.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from crawler.store.postgres.cluster import ClusterMixin
from crawler.store.postgres.results import ResultsMixin
from crawler.store.postgres.runs import RunsMixin

__all__ = ["Store"]

# The CrawlStore methods, each one transaction: repeated after a reconnect when the server
# went away under them (for at most the ``db_retry`` seconds the store was opened with).
# (``take`` is ``take_hosts`` of one host: repeated by it.)
_RETRIED = (
    "reset_in_flight", "begin_run", "end_run", "run_url_errors", "robots_policies",
    "put_robots", "add", "schedule_recrawl", "has_queued", "hosts_with_work",
    "hosts_with_work_among",
    "next_not_before", "queued_url", "take_hosts", "requeue", "give_up", "record",
    "host_states", "put_host_states", "cookies", "put_cookies", "item_change_counts",
    "run_item_count", "recent_stats", "seeded", "heartbeat", "claim", "renew", "release",
    "reap", "robots_of", "busy_elsewhere", "leave", "requeue_lost_takes",
)  # fmt: skip


class Store(ResultsMixin, RunsMixin, ClusterMixin):
    """The crawl database at a ``postgresql://`` URL. Not thread-safe: one owner calls it."""


def _retried(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> Any:
        # An iterator argument would be used up by the first attempt: keep its values.
        args = tuple(list(a) if isinstance(a, Iterator) else a for a in args)
        kwargs = {k: list(v) if isinstance(v, Iterator) else v for k, v in kwargs.items()}
        return self._retrying(lambda: method(self, *args, **kwargs))

    return call


for _name in _RETRIED:
    setattr(Store, _name, _retried(getattr(Store, _name)))
