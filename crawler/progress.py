"""The live status of a crawl for people (a terminal) and for cron (log lines).

:class:`Progress` is the engine's ``on_progress`` callback. It receives plain snapshots
(``pages``, ``pages_per_s``, ``queued``, ``in_flight``, ``errors``, ``items``, ``elapsed``).
On a terminal it redraws one status line in place; anywhere else it writes no escape codes
and logs an INFO line every ``log_every`` seconds instead. :class:`StatusAwareHandler`
lets log records and the status line share a terminal without garbling each other.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

__all__ = ["Progress", "StatusAwareHandler", "format_duration", "format_summary"]

log = logging.getLogger("crawler.progress")

_CLEAR_LINE = "\r\x1b[K"


def format_duration(seconds: float) -> str:
    """``"42.0s"``, ``"3m05s"``, ``"2h07m"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_summary(name: str, reason: str, exit_code: int, stats: Mapping[str, Any]) -> str:
    """The one line printed when a run ends (cron mails it)."""
    elapsed = float(stats.get("elapsed", 0.0) or 0.0)
    pages = int(stats.get("pages", 0))
    rate = f" ({pages / elapsed:.1f} pages/s)" if elapsed > 0 else ""
    return (
        f"{name}: {reason} (exit {exit_code}): {pages} pages, {int(stats.get('items', 0))} "
        f"items, {int(stats.get('errors', 0))} errors in {format_duration(elapsed)}{rate}"
    )


def _status_text(snap: Mapping[str, Any]) -> str:
    return (
        f"{int(snap.get('pages', 0))} pages ({float(snap.get('pages_per_s', 0.0)):.1f}/s), "
        f"{int(snap.get('items', 0))} items, {int(snap.get('errors', 0))} errors, "
        f"{int(snap.get('queued', 0))} queued, {int(snap.get('in_flight', 0))} in flight"
    )


class Progress:
    """Render progress snapshots: a status line on a TTY, periodic log lines otherwise."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every = log_every
        self._clock = clock
        self._next_log = clock() + log_every
        self._line = ""  # what the terminal currently shows
        self._updates = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        mode = "tty" if self.tty else f"log every {self.log_every:g}s"
        return f"<Progress {mode} {self._updates} updates>"

    def __call__(self, snapshot: Mapping[str, Any]) -> None:
        self._updates += 1
        text = _status_text(snapshot)
        if self.tty:
            elapsed = snapshot.get("elapsed")
            if elapsed is not None:
                text += f", {format_duration(float(elapsed))}"
            width = shutil.get_terminal_size((80, 24)).columns - 1
            with self._lock:
                self._line = text[:width]
                self._draw()
        elif self._clock() >= self._next_log:
            self._next_log = self._clock() + self.log_every
            log.info("%s", text)

    def _draw(self) -> None:
        self.stream.write(_CLEAR_LINE + self._line)
        self.stream.flush()

    def clear(self) -> None:
        """Take the status line off the screen (before something else is printed)."""
        if self.tty and self._line:
            with self._lock:
                self.stream.write(_CLEAR_LINE)
                self.stream.flush()

    def redraw(self) -> None:
        if self.tty and self._line:
            with self._lock:
                self._draw()

    def close(self) -> None:
        """Remove the status line for good; the summary line follows."""
        self.clear()
        self._line = ""


class StatusAwareHandler(logging.StreamHandler[TextIO]):
    """A stderr log handler that lifts the status line off the terminal for each record."""

    def __init__(self, progress: Progress | None, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)
        if self.progress is not None:
            self.progress.redraw()
