"""Issue 12's bar, end to end: three scheduled runs over a loopback shop whose products appear,
change price and disappear (and one page that times out in run 3); ``crawler changes`` reports
exactly the true changes. Then a run whose price selector breaks exits 1 naming ``price``, and
``on_finish`` receives the run's summary as JSON. The first test runs on both backends
(``crawl_db``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.crawl import rows
from tests.kit.project import invoke
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

# Every run refetches every page; a timeout fails at once (no retries).
SETTINGS = Settings(workers=2, timeout=1, retries=0, robots=False, recrawl_after=0)

# The shop per run: category -> {sku: price}.
SHOP: list[dict[str, dict[str, float]]] = [
    {"a": {"s1": 10, "s2": 20}, "b": {"s3": 30, "s4": 40}, "c": {"s5": 50, "s6": 60}},
    # run 2: s1 changes price, s4 disappears, s7 appears; c is the same page again
    {"a": {"s1": 11, "s2": 20}, "b": {"s3": 30, "s7": 70}, "c": {"s5": 50, "s6": 60}},
    # run 3: s2 disappears, s8 appears, s3 changes; c would change s5 and drop s6, but its
    # page times out: nothing of c may be reported
    {"a": {"s1": 11, "s8": 80}, "b": {"s3": 35, "s7": 70}, "c": {"s5": 55}},
    # run 4: every page changes (and the spider's price selector breaks)
    {"a": {"s1": 12, "s8": 81}, "b": {"s3": 36, "s7": 71}, "c": {"s5": 56}},
]


class Shop(Spider):
    name = "shop"
    item_key = "sku"
    broken = ""  # -a broken=1: the price selector no longer matches

    def parse(self, response: Response) -> Any:
        yield from response.links()

    def parse_category(self, response: Response) -> Any:
        price = ".cost::text" if self.broken else ".price::text"
        for product in response.css(".product"):
            value = product.css(price).get()
            yield {
                "sku": product.css(".sku::text").get(),
                "name": product.css(".name::text").get(),
                "price": float(value) if value is not None else None,
            }

    def start_requests(self) -> Any:
        from crawler.spider import Request

        for url in self.start_urls:
            for cat in "abc":
                yield Request(url + f"cat/{cat}", callback="parse_category")


def build(site: Site, state: dict[str, Any]) -> str:
    def category(path: str) -> tuple[int, dict[str, str], str]:
        cat = path.rsplit("/", 1)[1]
        if cat in state.get("slow", ()):
            time.sleep(3)  # longer than the 1 s timeout
        products = SHOP[state["run"]][cat]
        body = "".join(
            f'<div class="product"><span class="sku">{sku}</span>'
            f'<span class="name">Product {sku}</span><span class="price">{price}</span></div>'
            for sku, price in products.items()
        )
        return 200, {}, f"<html><body>{body}</body></html>"

    host = site.add_host("127.0.0.2", {"*": category})
    return f"http://{host}/"


def changes(db: Path | str, *args: str) -> list[dict[str, Any]]:
    result = invoke("changes", "shop", "--db", str(db), "--format", "jsonl", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def summary(feed: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for c in feed:
        detail = ",".join(f"{k}:{old}->{new}" for k, (old, new) in c["fields"].items())
        out.add((c["change"], c["key"], detail))
    return out


@pytest.mark.timeout(120)
def test_three_scheduled_runs_report_exactly_the_true_changes_then_a_broken_selector_fails(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str]
) -> None:
    state: dict[str, Any] = {"run": 0}
    start = build(site, state)
    db = crawl_db("shop")
    kwargs = {"start_urls": start}

    first = crawl(Shop, settings=SETTINGS, db_path=db, spider_kwargs=kwargs)
    assert first.exit_code == 0
    assert first.stats["item_changes"] == {"new": 6, "changed": 0, "removed": 0}
    assert {c["key"] for c in changes(db)} == {"s1", "s2", "s3", "s4", "s5", "s6"}

    state["run"] = 1
    second = crawl(Shop, settings=SETTINGS, db_path=db, spider_kwargs=kwargs)
    assert second.exit_code == 0
    assert summary(changes(db)) == {
        ("changed", "s1", "price:10.0->11.0"),
        ("removed", "s4", ""),
        ("new", "s7", ""),
    }
    assert second.stats["item_changes"] == {"new": 1, "changed": 1, "removed": 1}

    state["run"], state["slow"] = 2, {"c"}
    third = crawl(Shop, settings=SETTINGS, db_path=db, spider_kwargs=kwargs)
    assert third.stats["errors_by_kind"] == {"timeout": 1}
    assert summary(changes(db)) == {
        ("removed", "s2", ""),
        ("new", "s8", ""),
        ("changed", "s3", "price:30.0->35.0"),
    }  # nothing of c: s5 and s6 are neither changed nor removed
    # Runs 2 and 3 together, netted per item.
    assert summary(changes(db, "--since-run", str(first.run_id))) == {
        ("changed", "s1", "price:10.0->11.0"),
        ("changed", "s3", "price:30.0->35.0"),
        ("removed", "s2", ""),
        ("removed", "s4", ""),
        ("new", "s7", ""),
        ("new", "s8", ""),
    }
    assert {c["key"] for c in changes(db, "--since", "1h")} >= {"s1", "s7", "s8"}
    # The history, in plain SQL.
    assert rows(
        db,
        "SELECT key, first_seen_run, last_seen_run, last_changed_run, removed_run"
        " FROM tracked_items ORDER BY key",
    ) == [
        ("s1", 1, 3, 2, None),
        ("s2", 1, 2, 1, 3),
        ("s3", 1, 3, 3, None),
        ("s4", 1, 1, 1, 2),
        ("s5", 1, 2, 1, None),  # last seen in run 2: run 3 did not reach its page
        ("s6", 1, 2, 1, None),
        ("s7", 2, 3, 2, None),
        ("s8", 3, 3, 3, None),
    ]
    versions = rows(db, "SELECT key, data FROM item_versions ORDER BY id")
    assert [(key, json.loads(data)["price"]) for key, data in versions] == [
        ("s1", 10.0),
        ("s3", 30.0),
    ]
    shown = invoke("stats", "shop", "--db", str(db)).stdout
    assert "changes     1 new, 1 changed, 1 removed" in shown
    assert "fill        name 100%, price 100%, sku 100%" in shown
    table = invoke("changes", "shop", "--db", str(db))
    assert "price: 30.0 -> 35.0" in table.stdout
    assert "1 new, 1 changed, 1 removed" in table.stdout

    # Run 4: the price selector breaks.
    state["run"], state["slow"] = 3, set()
    out = tmp_path / "summary.json"
    broken = SETTINGS.replace(max_drop=0.5, on_finish=f"cat > {out}")
    fourth = crawl(Shop, settings=broken, db_path=db, spider_kwargs={**kwargs, "broken": "1"})
    assert fourth.exit_code == 1
    assert "price filled in 0% of items" in fourth.finish_reason
    assert "median 100% of the previous runs" in fourth.finish_reason
    assert fourth.stats["field_fill"]["price"] == 0.0
    assert fourth.stats["field_fill"]["sku"] == 1.0
    sent = json.loads(out.read_text())
    assert sent["exit_code"] == 1
    assert sent["reason"] == fourth.finish_reason
    assert sent["items"] == fourth.stats["items"] == 5
    assert [(g["gate"], g["subject"]) for g in sent["failed_gates"]] == [("max_drop", "price")]
    assert sent["failed_gates"][0]["median"] == 1.0
    # The command (it may hold a webhook token) is not kept in the runs row.
    stored = rows(db, "SELECT settings FROM runs WHERE id = ?", fourth.run_id)[0][0]
    assert json.loads(stored)["on_finish"] == "(set)" and str(out) not in stored


class Checked(Shop):
    name = "checked"
    item_schema = {
        "type": "object",
        "required": ["sku", "price"],
        "properties": {"price": {"type": "number", "minimum": 20}},
    }


@pytest.mark.timeout(60)
def test_invalid_items_are_error_rows_and_a_failing_on_finish_keeps_the_exit_code(
    site: Site, tmp_path: Path
) -> None:
    state: dict[str, Any] = {"run": 0}
    start = build(site, state)
    db = tmp_path / "checked.db"
    settings = SETTINGS.replace(on_finish="exit 5", min_field_fill={"price": 0.5})
    result = crawl(Checked, settings=settings, db_path=db, spider_kwargs={"start_urls": start})
    assert result.exit_code == 0  # on_finish failed; the run's code is its own
    assert rows(db, "SELECT kind, message FROM errors") == [
        ("item", "price: minimum 20: 10.0 is less than the minimum of 20")
    ]
    assert [r[0] for r in rows(db, "SELECT sku FROM items ORDER BY sku")] == [
        "s2", "s3", "s4", "s5", "s6"
    ]  # fmt: skip
    assert result.stats["items"] == 5
    assert result.stats["items_by_callback"] == {"parse_category": 5}
    assert result.stats["field_fill"] == {"name": 1.0, "price": 1.0, "sku": 1.0}
