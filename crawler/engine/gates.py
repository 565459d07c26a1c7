"""Quality gates: a finished run compared with its thresholds and with the runs before it.

Pure rules, no I/O, except :func:`run_on_finish`, which runs the ``on_finish`` command. The
run's stats carry ``field_fill`` (each item field: the share of the run's items in which it
is filled, that is neither missing, None, "" nor empty) and ``items_by_callback``
(``crawler.engine.runstats``). :func:`check` compares them with:

- ``min_field_fill`` (``{"price": 0.95}``): a field filled in a smaller share fails;
- ``max_drop`` (``0.5``): a field's fill rate, the run's item count or a callback's item
  count below ``(1 - max_drop)`` times its median over the previous runs that finished
  with exit 0 (up to :data:`HISTORY`) fails. A field or callback the earlier runs never had
  is not compared.

A recrawl runs callbacks only on pages that changed (docs/cron.md), so what a run parsed is
not all it saw. The run's item count is ``items_seen`` (parsed, or kept on an unchanged page,
counted by the store); fill rates are shares of the items parsed, judged only when the run
parsed some; per-callback counts are compared only in a run with no unchanged page.

Each failure is a :class:`GateFailure` that names the field or callback with the numbers; a
failing gate makes the run exit 1 (``EXIT_THRESHOLD``). docs/changes.md has the user's view.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["HISTORY", "GateFailure", "check", "run_on_finish"]

log = logging.getLogger("crawler")

HISTORY = 5  # finished runs whose median a run is compared with
ON_FINISH_TIMEOUT = 60.0  # seconds the on_finish command may take


@dataclass(frozen=True, slots=True)
class GateFailure:
    """One failed gate: ``gate`` is the setting, ``subject`` the field or callback."""

    gate: str  # "min_field_fill" or "max_drop"
    kind: str  # "field" (a fill rate), "callback" (its item count) or "items" (the run's)
    subject: str
    value: float
    threshold: float
    median: float | None = None  # max_drop: the median of the previous runs

    def __str__(self) -> str:
        if self.kind == "field":
            now = f"{self.subject} filled in {self.value:.0%} of items"
            if self.median is None:
                return f"{now}, below min_field_fill {self.threshold:.0%}"
            return (
                f"{now}, below {self.threshold:.0%} (max_drop) of the median"
                f" {self.median:.0%} of the previous runs"
            )
        what = "items" if self.kind == "items" else f"items from {self.subject}"
        return (
            f"{int(self.value)} {what}, below {self.threshold:.0%} (max_drop) of the median"
            f" {self.median:g} of the previous runs"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": str(self)}


def check(
    stats: Mapping[str, Any],
    previous: Sequence[Mapping[str, Any]],
    *,
    min_field_fill: Mapping[str, float] | None,
    max_drop: float | None,
) -> list[GateFailure]:
    """The gates ``stats`` fails, given the stats of the previous finished runs (any order)."""
    failures: list[GateFailure] = []
    fill: Mapping[str, float] = stats.get("field_fill") or {}
    parsed = bool(stats.get("items"))
    for name, least in (min_field_fill or {}).items() if parsed else ():
        rate = float(fill.get(name, 0.0))
        if rate < least:
            failures.append(GateFailure("min_field_fill", "field", name, rate, least))
    past = [p for p in previous if "field_fill" in p][-HISTORY:]
    if max_drop is None or not past:
        return failures
    # Imported here: this runs once, after the crawl, and statistics (with decimal and
    # fractions, 0.5 MB) imported with the engine would be resident in every forked worker.
    import statistics

    keep = 1.0 - max_drop
    fields = sorted({name for p in past for name in p["field_fill"]}) if parsed else []
    for name in fields:
        median = statistics.median(float(p["field_fill"].get(name, 0.0)) for p in past)
        rate = float(fill.get(name, 0.0))
        if median > 0 and rate < keep * median:
            failures.append(GateFailure("max_drop", "field", name, rate, keep, median))
    median = statistics.median(float(p.get("items_seen", p.get("items", 0))) for p in past)
    items = float(stats.get("items_seen", stats.get("items", 0)))
    if median > 0 and items < keep * median:
        failures.append(GateFailure("max_drop", "items", "items", items, keep, median))
    by_callback: Mapping[str, int] = stats.get("items_by_callback") or {}
    if stats.get("unchanged"):
        return failures
    for name in sorted({c for p in past for c in p.get("items_by_callback") or {}}):
        median = statistics.median(
            float((p.get("items_by_callback") or {}).get(name, 0)) for p in past
        )
        count = float(by_callback.get(name, 0))
        if median > 0 and count < keep * median:
            failures.append(GateFailure("max_drop", "callback", name, count, keep, median))
    return failures


def run_on_finish(command: str, summary: Mapping[str, Any]) -> None:
    """Run ``command`` through the shell with ``summary`` as JSON on stdin.

    Its failure (non-zero exit, timeout, not found) is logged and goes no further: the hook
    never changes the run's exit code. Its output goes where ours goes."""
    data = json.dumps(summary, ensure_ascii=False, default=str)
    try:
        done = subprocess.run(
            command, shell=True, input=data.encode(), timeout=ON_FINISH_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("on_finish command failed: %s", exc)
        return
    if done.returncode != 0:
        log.error("on_finish command exited with %d", done.returncode)
