"""What a run did, counted: the counters the engine keeps, its progress snapshot and final stats.

Pure bookkeeping, no I/O. The engine hands :meth:`RunStats.count` every batch of Outcomes it
records; :meth:`RunStats.snapshot` is what ``on_progress`` and the periodic log line see, and
:meth:`RunStats.summary` becomes the ``runs`` row's stats and
:class:`~crawler.engine.RunResult`'s.
Kept apart from the loop so that what a number means is decided in one place.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crawler.messages import Outcome

__all__ = ["RunStats", "log_progress"]

log = logging.getLogger("crawler")

_EMPTY: tuple[object, ...] = ("", [], {})  # with None: a field that is there but not filled


@dataclass(slots=True)
class RunStats:
    """The run's counters; ``started`` is the wall-clock start (``max_runtime`` counts from it)."""

    started: float = field(default_factory=time.time)
    pages: int = 0
    items: int = 0
    errors: int = 0
    bytes: int = 0
    skipped_urls: int = 0
    retries: int = 0
    redirects: int = 0
    dead_workers: int = 0
    unchanged: int = 0  # 304, or the stored body hash: page and items kept, no callback
    robots_denied: int = 0  # disallowed by robots.txt: an errors row "robots", not an error
    robots_fetched: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    per_host: Counter[str] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    # Quality gates (crawler.engine.gates): items in which each field is filled, items per
    # callback.
    filled: Counter[str] = field(default_factory=Counter)
    items_by_callback: Counter[str] = field(default_factory=Counter)

    def count(self, batch: Iterable[Outcome]) -> None:
        """Add what a batch of Outcomes (about to be recorded) did."""
        for o in batch:
            page = o.page
            if page is not None:
                self.pages += 1
                self.bytes += page.size
                self.by_status[page.status] += 1
                self.per_host[o.host] += 1
            if o.items:
                self.items += len(o.items)
                self.items_by_callback[o.callback or "parse"] += len(o.items)
                filled = self.filled
                for item in o.items:
                    for name, value in item.items():
                        filled[name] += 0 if value is None or value in _EMPTY else 1
            for failure in o.failures:
                if failure.kind == "robots":
                    self.robots_denied += 1
                    continue
                self.errors += 1
                self.errors_by_kind[failure.kind] += 1
            self.unchanged += o.stats.get("unchanged", 0)
            self.skipped_urls += o.skipped_urls
            if o.state == "retry":
                self.retries += 1
            self.redirects += o.stats.get("redirects", 0)

    def count_errors(self, kind: str, n: int) -> None:
        self.errors += n
        self.errors_by_kind[kind] += n

    def snapshot(self, queued: int, in_flight: int) -> dict[str, Any]:
        """The progress view: a few numbers, twice a second."""
        elapsed = max(1e-9, time.time() - self.started)
        return {
            "pages": self.pages,
            "pages_per_s": self.pages / elapsed,
            "queued": queued,
            "in_flight": in_flight,
            "errors": self.errors,
            "items": self.items,
            "elapsed": elapsed,
        }

    def summary(self, workers: int) -> dict[str, Any]:
        """The final stats (plain JSON values), as the ``runs`` row keeps them."""
        elapsed = time.time() - self.started
        return {
            "pages": self.pages,
            "items": self.items,
            "errors": self.errors,
            "bytes": self.bytes,
            "elapsed": round(elapsed, 3),
            "pages_per_s": round(self.pages / elapsed, 2) if elapsed > 0 else 0.0,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "per_host": dict(self.per_host.most_common()),
            "errors_by_kind": dict(self.errors_by_kind),
            "skipped_urls": self.skipped_urls,
            "retries": self.retries,
            "redirects": self.redirects,
            "dead_workers": self.dead_workers,
            "unchanged": self.unchanged,
            "robots_denied": self.robots_denied,
            "robots_fetched": self.robots_fetched,
            "workers": workers,
            "field_fill": self.field_fill(),
            "items_by_callback": dict(self.items_by_callback),
        }

    def field_fill(self) -> dict[str, float]:
        """Each item field: the share of the run's items in which it is filled."""
        if not self.items:
            return {}
        return {name: round(n / self.items, 4) for name, n in sorted(self.filled.items())}


def log_progress(snap: dict[str, Any]) -> None:
    """The periodic progress line, at DEBUG (``on_progress`` shows progress to people)."""
    log.debug(
        "%d pages (%.1f/s), %d items, %d errors, %d queued, %d in flight",
        snap["pages"],
        snap["pages_per_s"],
        snap["items"],
        snap["errors"],
        snap["queued"],
        snap["in_flight"],
    )
