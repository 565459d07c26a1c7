"""The status line on a terminal, log lines off it, and the end-of-run summary."""

from __future__ import annotations

import io
import logging

import pytest

from crawler.progress import Progress, StatusAwareHandler, format_duration, format_summary

SNAP = {
    "pages": 120, "pages_per_s": 12.345, "queued": 40, "in_flight": 4,
    "errors": 2, "items": 118, "elapsed": 9.7,
}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tty_redraws_one_line_in_place() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress(SNAP)
    progress({**SNAP, "pages": 121})
    text = out.getvalue()
    assert text.count("\r") == 2 and "\n" not in text
    assert text.endswith("121 pages (12.3/s), 118 items, 2 errors, 40 queued, 4 in flight, 9.7s")
    progress.close()
    assert out.getvalue().endswith("\r\x1b[K")
    assert "tty" in repr(progress) and "2 updates" in repr(progress)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_off_a_terminal_no_escape_codes_only_periodic_log_lines() -> None:
    out = io.StringIO()
    clock = Clock()
    progress = Progress(out, tty=False, log_every=10.0, clock=clock)
    records = Records()
    logger = logging.getLogger("crawler.progress")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        progress(SNAP)  # too soon
        clock.now += 10
        progress(SNAP)
        clock.now += 5
        progress(SNAP)  # too soon again
        clock.now += 5
        progress({**SNAP, "pages": 200})
        progress.close()
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert out.getvalue() == ""
    assert records.messages == [
        "120 pages (12.3/s), 118 items, 2 errors, 40 queued, 4 in flight",
        "200 pages (12.3/s), 118 items, 2 errors, 40 queued, 4 in flight",
    ]


def test_log_records_lift_the_status_line() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    handler = StatusAwareHandler(progress, out)
    logger = logging.getLogger("crawler.test_progress")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        progress(SNAP)
        logger.warning("careful")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    # cleared, the record on its own line, then the status line drawn again
    assert "\r\x1b[Kcareful\n\r\x1b[K120 pages" in text


def test_status_line_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    out = io.StringIO()
    Progress(out, tty=True)(SNAP)
    assert len(out.getvalue()) == len("\r\x1b[K") + 29


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0.0s"), (42.04, "42.0s"), (185, "3m05s"), (7620, "2h07m")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_summary() -> None:
    stats = {"pages": 120, "items": 118, "errors": 2, "elapsed": 60.0, "bytes": 5}
    assert format_summary("news", "finished", 0, stats) == (
        "news: finished (exit 0): 120 pages, 118 items, 2 errors in 1m00s (2.0 pages/s)"
    )
    assert format_summary("x", "stopped", 4, {}) == (
        "x: stopped (exit 4): 0 pages, 0 items, 0 errors in 0.0s"
    )
