"""How a run stops: exit codes, SIGINT/SIGTERM, the limits, and the graceful then forced stop.

A stop has a reason, an exit code and a deadline. The first SIGINT or SIGTERM (or a limit:
``max_runtime``, ``max_pages``, ``max_items``; or workers that keep dying) stops dispatching,
tells the workers to drop unstarted jobs and gives in-flight work :data:`GRACE` seconds; a
second signal cuts that to :data:`HARD_GRACE`. The signal handler only appends to a list: the
engine's loop acts on it between batches, so nothing happens inside a handler. What is still
unanswered at the deadline is the engine's to requeue.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any

from crawler.engine.runstats import RunStats
from crawler.errors import EXIT_FINISHED, EXIT_LIMIT, EXIT_SIGINT, EXIT_SIGTERM, EXIT_THRESHOLD
from crawler.settings import Settings

__all__ = [
    "GRACE",
    "HARD_GRACE",
    "Shutdown",
]

log = logging.getLogger("crawler")

GRACE = 5.0  # seconds in-flight work gets after a stop
HARD_GRACE = 1.0  # after a second signal


class Shutdown:
    """The run's stop state: why it stops (``reason``), how it exits, and until when it waits.

    ``on_stop`` is called each time a stop starts or is confirmed (the engine tells the workers
    to drop unstarted jobs).
    """

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.on_stop = on_stop
        self.signals: list[int] = []
        self.reason: str | None = None
        self.exit_code = EXIT_FINISHED
        self.deadline: float | None = None  # when stopping: give up on in-flight work then
        self.abandoned = False  # in-flight work was given up on at the end of a grace
        self._previous: dict[signal.Signals, Any] = {}

    def __repr__(self) -> str:
        return f"<Shutdown {self.reason or 'running'} exit={self.exit_code}>"

    # -- signals -------------------------------------------------------------------------------

    def install(self) -> None:
        """Catch SIGINT and SIGTERM until :meth:`restore`."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    @property
    def signalled(self) -> bool:
        return bool(self.signals)

    @property
    def hurry(self) -> bool:
        """Workers get only :data:`HARD_GRACE` to leave: a second signal, or work abandoned."""
        return len(self.signals) > 1 or self.abandoned

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, reason: str, exit_code: int, grace: float) -> None:
        """Stop dispatching; in-flight work has ``grace`` seconds. The first reason wins."""
        if self.reason is None:
            self.reason, self.exit_code = reason, exit_code
        self.deadline = time.monotonic() + grace
        self.on_stop()

    def check(self, settings: Settings, now: float, stats: RunStats) -> None:
        """Act on signals that arrived, else stop at a limit that was reached."""
        if self.signals:
            self._handle_signals()
            return
        if self.reason is not None:
            return
        s = settings
        if s.max_runtime and now - stats.started >= s.max_runtime:
            self.stop("max_runtime", EXIT_LIMIT, GRACE)
        elif s.max_pages and stats.pages >= s.max_pages:
            self.stop("max_pages", EXIT_LIMIT, GRACE * 6)
        elif s.max_items and stats.items >= s.max_items:
            self.stop("max_items", EXIT_LIMIT, GRACE * 6)

    def _handle_signals(self) -> None:
        first = self.signals[0]
        code = EXIT_SIGINT if first == signal.SIGINT else EXIT_SIGTERM
        name = "SIGINT" if first == signal.SIGINT else "SIGTERM"
        if len(self.signals) == 1 and self.deadline is None:
            log.warning("%s: stopping, waiting up to %.0fs for requests in flight", name, GRACE)
            self.stop(f"interrupted ({name})", code, GRACE)
        elif len(self.signals) > 1 and self.signals[-1] != -1:
            log.warning("second signal: stopping now")
            self.reason, self.exit_code = f"interrupted ({name})", code
            self.deadline = min(self.deadline or math.inf, time.monotonic() + HARD_GRACE)
            self.signals.append(-1)  # handled

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- how a run that ran out of work ends ---------------------------------------------------

    def check_thresholds(
        self, settings: Settings, items: int, url_errors: Callable[[], tuple[int, int]]
    ) -> None:
        """A finished run that crossed ``min_items`` or ``max_error_rate`` exits 1.

        ``url_errors`` gives (URLs that failed, URLs handled) for this run.
        """
        if self.exit_code != EXIT_FINISHED:
            return
        s = settings
        if s.min_items and items < s.min_items:
            self.reason = f"finished below min_items ({items} < {s.min_items})"
            self.exit_code = EXIT_THRESHOLD
        elif s.max_error_rate is not None:
            bad, handled = url_errors()
            if handled and bad / handled > s.max_error_rate:
                self.reason = (
                    f"finished above max_error_rate ({bad}/{handled} URLs failed,"
                    f" {bad / handled:.0%} > {s.max_error_rate:.0%})"
                )
                self.exit_code = EXIT_THRESHOLD

    def fail_gates(self, failed: Sequence[object]) -> None:
        """Quality gates that failed (``crawler.engine.gates``) make a finished run exit 1;
        the reason names each one with its numbers. A run stopped otherwise keeps its code."""
        if not failed or self.exit_code not in (EXIT_FINISHED, EXIT_THRESHOLD):
            return
        said = "; ".join(str(f) for f in failed)
        self.reason = f"{self.reason}; {said}" if self.reason else f"quality gate failed: {said}"
        self.exit_code = EXIT_THRESHOLD

    def only_deferred(self, now: float, waits: Iterable[float | None], defer_after: float) -> bool:
        """Nothing in flight, and no queued entry may start for more than ``defer_after``.

        ``waits`` are the next times work may start (politeness clocks, the queue's
        ``not_before``). A host that answered 503 with ``Retry-After: 3600`` must not keep a
        finished crawl sleeping for an hour: the run ends with that work queued (exit 4,
        "deferred") and the next run picks it up when it is due.
        """
        known = [t for t in waits if t is not None]
        if not known or min(known) - now <= defer_after:
            return False
        self.reason, self.exit_code = "deferred", EXIT_LIMIT
        log.info("only work not due for %.0fs is left: stopping", min(known) - now)
        return True
