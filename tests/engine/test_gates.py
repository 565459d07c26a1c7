"""Quality gates (crawler/engine/gates.py): pure rules over run stats, and the on_finish hook."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from crawler.engine.gates import check, run_on_finish
from crawler.errors import SettingsError
from crawler.settings import resolve_settings


def stats(items: int, fill: dict[str, float], **more: Any) -> dict[str, Any]:
    return {"items": items, "field_fill": fill, "items_by_callback": {"parse": items}, **more}


PAST = [stats(100, {"price": 1.0, "name": 1.0}), stats(90, {"price": 0.9, "name": 1.0})]


def test_min_field_fill_names_the_field_and_the_numbers() -> None:
    failed = check(stats(10, {"price": 0.5}), [], min_field_fill={"price": 0.95}, max_drop=None)
    assert [(f.gate, f.subject, f.value, f.threshold) for f in failed] == [
        ("min_field_fill", "price", 0.5, 0.95)
    ]
    assert str(failed[0]) == "price filled in 50% of items, below min_field_fill 95%"
    # A field no item had is filled in 0% of them.
    assert check(stats(10, {}), [], min_field_fill={"price": 0.1}, max_drop=None)[0].value == 0.0
    assert check(stats(10, {"price": 1.0}), [], min_field_fill={"price": 1}, max_drop=None) == []


def test_max_drop_against_the_median_of_the_previous_runs() -> None:
    now = stats(94, {"price": 0.4, "name": 1.0})
    failed = check(now, PAST, min_field_fill=None, max_drop=0.5)
    assert [(f.kind, f.subject, f.median) for f in failed] == [("field", "price", 0.95)]
    assert str(failed[0]) == (
        "price filled in 40% of items, below 50% (max_drop) of the median 95% of the previous runs"
    )
    # At exactly half the median nothing fails; the item count and a callback's count do.
    assert (
        check(stats(95, {"price": 0.475, "name": 1}), PAST, min_field_fill=None, max_drop=0.5) == []
    )
    few = check(stats(40, {"price": 1, "name": 1}), PAST, min_field_fill=None, max_drop=0.5)
    assert [(f.kind, f.subject, f.value, f.median) for f in few] == [
        ("items", "items", 40, 95),
        ("callback", "parse", 40, 95),
    ]
    assert (
        str(few[1])
        == "40 items from parse, below 50% (max_drop) of the median 95 of the previous runs"
    )


def test_max_drop_without_history_and_runs_that_parsed_nothing() -> None:
    assert check(stats(1, {"price": 0.0}), [], min_field_fill=None, max_drop=0.5) == []
    # A recrawl where every page was unchanged parsed no items: no fill rate to judge, and
    # the items it saw (items_seen, kept on unchanged pages) are what is counted.
    seen = stats(0, {}, items_seen=95, unchanged=10)
    assert check(seen, PAST, min_field_fill={"price": 1}, max_drop=0.5) == []
    gone = stats(0, {}, items_seen=3, unchanged=10)
    assert [f.kind for f in check(gone, PAST, min_field_fill=None, max_drop=0.5)] == ["items"]


def test_settings_parse_and_check_the_gates() -> None:
    s = resolve_settings(None, {"min_field_fill": "price=0.95, name=1", "max_drop": "0.5"})
    assert s.min_field_fill == {"price": 0.95, "name": 1.0} and s.max_drop == 0.5
    assert resolve_settings(None, {"min_field_fill": {"price": 1}}).min_field_fill == {"price": 1}
    for bad in ({"min_field_fill": "price"}, {"min_field_fill": {"p": 2}}, {"max_drop": "1.5"}):
        with pytest.raises(SettingsError):
            resolve_settings(None, bad)


def test_on_finish_gets_the_summary_and_its_failure_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "got.json"
    run_on_finish(f"cat > {out}", {"exit_code": 1, "failed_gates": [{"subject": "price"}]})
    assert json.loads(out.read_text()) == {"exit_code": 1, "failed_gates": [{"subject": "price"}]}
    with caplog.at_level(logging.ERROR, logger="crawler"):
        run_on_finish(f"{sys.executable} -c 'raise SystemExit(3)'", {})
    assert "on_finish command exited with 3" in caplog.text
