"""Item history through CrawlStore.record, on both backends (``crawl_db``: a real SQLite file,
a real PostgreSQL database; crawler/store/items.py, crawler/store/postgres/items.py): what is
new, changed and removed, and what must never count as removed, and the change feed read back
from either."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.messages import Failure, Outcome
from crawler.store import CrawlStore, open_store
from crawler.store.changes import format_changes, read_changes
from tests.store.test_store import page, req


@pytest.fixture
def db(crawl_db: Callable[[str], Path | str]) -> Path | str:
    return crawl_db("crawl")


@pytest.fixture
def store(db: Path | str) -> Iterator[CrawlStore]:
    s = open_store(db)
    yield s
    s.close()


def sql(store: CrawlStore, query: str) -> list[tuple[Any, ...]]:
    """Rows of a plain query (no parameters: the backends spell them differently)."""
    return [tuple(row) for row in store.conn.execute(query).fetchall()]  # type: ignore[attr-defined]


def outcome(url: str, items: list[dict[str, Any]], **kw: Any) -> Outcome:
    r = req(url)
    values: dict[str, Any] = {
        "page": page(r.url, body=json.dumps(items).encode()),
        "items": tuple(items),
        "item_keys": tuple(str(i["sku"]) for i in items),
        "callback": "parse",
    }
    values.update(kw)
    return Outcome(fp=r.fp, url=r.url, host=r.host, state="done", **values)


def run(store: CrawlStore, *outcomes: Outcome) -> int:
    run_id = store.begin_run("shop")
    store.add(req(o.url) for o in outcomes)
    store.record(list(outcomes), run_id=run_id, track_items=True)
    store.end_run(run_id, exit_code=0, finish_reason="finished", stats={})
    return run_id


def feed(db: Path | str, **kw: Any) -> set[tuple[str, str]]:
    return {(c["change"], c["key"]) for c in read_changes(db, "shop", **kw)}


A = "http://shop.test/a"
B = "http://shop.test/b"


def test_new_changed_removed_and_the_counts(store: CrawlStore, db: Path | str) -> None:
    first = run(store, outcome(A, [{"sku": 1, "price": 10}, {"sku": 2, "price": 20}]))
    assert store.item_change_counts(first) == {"new": 2, "changed": 0, "removed": 0}
    second = run(store, outcome(A, [{"sku": 1, "price": 12}, {"sku": 3, "price": 30}]))
    assert store.item_change_counts(second) == {"new": 1, "changed": 1, "removed": 1}
    changes = read_changes(db, "shop")
    assert [(c["change"], c["key"], c["fields"]) for c in changes] == [
        ("new", "3", {}),
        ("changed", "1", {"price": [10, 12]}),
        ("removed", "2", {}),
    ]
    assert changes[2]["item"] == {"sku": 2, "price": 20}  # the last version of a removed one
    # The old version is kept, queryable with plain SQL.
    versions = sql(store, "SELECT key, data, first_seen_run, replaced_run FROM item_versions")
    assert versions == [("1", '{"price":10,"sku":1}', first, second)]
    text = format_changes(changes, "table")
    assert "price: 10 -> 12" in text and "1 new, 1 changed, 1 removed" in text
    csv = format_changes(changes, "csv").splitlines()
    assert csv[0] == "change,key,run_id,page_url,fields,item" and len(csv) == 4


def test_a_page_not_reached_or_failing_removes_nothing(store: CrawlStore, db: Path | str) -> None:
    run(store, outcome(A, [{"sku": 1}, {"sku": 2}]), outcome(B, [{"sku": 3}]))
    r = req(A)
    timeout = Outcome(r.fp, r.url, r.host, "failed", failures=(Failure(r.url, "timeout", "t"),))
    # A: timed out (no page); B: its callback raised after yielding nothing.
    broken = outcome(B, [], failures=(Failure(B, "callback", "ValueError: x"),))
    second = run(store, timeout, broken)
    assert store.item_change_counts(second) == {"new": 0, "changed": 0, "removed": 0}
    # A refused (invalid) item keeps the others of its page too.
    refused = outcome(A, [{"sku": 1}], failures=(Failure(A, "item", "sku: type"),))
    third = run(store, refused)
    assert store.item_change_counts(third)["removed"] == 0
    # A callback that ran cleanly and no longer yields sku 2: removed.
    fourth = run(store, outcome(A, [{"sku": 1}]))
    assert feed(db) == {("removed", "2")}
    assert sql(
        store, "SELECT key, removed_run FROM tracked_items WHERE removed_run IS NOT NULL"
    ) == [("2", fourth)]


def test_an_unchanged_page_confirms_its_items(store: CrawlStore) -> None:
    run(store, outcome(A, [{"sku": 1}]))
    r = req(A)
    unchanged = Outcome(r.fp, r.url, r.host, "done", page=page(r.url, status=304, body=b""))
    second = run(store, unchanged)
    assert store.item_change_counts(second) == {"new": 0, "changed": 0, "removed": 0}
    assert sql(store, "SELECT last_seen_run FROM tracked_items") == [(second,)]


def test_an_item_moving_to_another_page_is_not_removed(store: CrawlStore) -> None:
    run(store, outcome(A, [{"sku": 1}, {"sku": 2}]), outcome(B, []))
    # sku 2 moves from A to B; A is recorded first, so it is marked removed and then found.
    second = run(store, outcome(A, [{"sku": 1}]), outcome(B, [{"sku": 2}]))
    assert store.item_change_counts(second) == {"new": 0, "changed": 0, "removed": 0}
    assert sql(store, "SELECT page_url, removed_run FROM tracked_items WHERE key = '2'") == [
        (req(B).url, None)
    ]


def test_removed_then_back_is_new_again_and_netted_over_runs(
    store: CrawlStore, db: Path | str
) -> None:
    first = run(store, outcome(A, [{"sku": 1, "p": 1}, {"sku": 2, "p": 2}]))
    run(store, outcome(A, [{"sku": 1, "p": 1}]))
    third = run(store, outcome(A, [{"sku": 1, "p": 1}, {"sku": 2, "p": 2}]))
    assert feed(db) == {("new", "2")}
    assert store.item_change_counts(third)["new"] == 1
    # Over runs 2 and 3: removed and back unchanged is no change at all.
    assert feed(db, since_run=first) == set()
    # Over all three: new.
    assert feed(db, since_run=0) == {("new", "1"), ("new", "2")}


def test_items_without_a_key_keep_todays_behaviour(store: CrawlStore) -> None:
    r = req(A)
    plain = Outcome(r.fp, r.url, r.host, "done", page=page(r.url), items=({"t": 1},))
    run_id = store.begin_run("shop")
    store.add([req(A)])
    store.record([plain], run_id=run_id)
    assert sql(store, "SELECT count(*) FROM tracked_items") == [(0,)]
    assert sql(store, "SELECT t FROM items") == [(1,)]


def test_a_page_gone_404_removes_its_items_a_500_does_not(
    store: CrawlStore, db: Path | str
) -> None:
    run(store, outcome(A, [{"sku": 1}]), outcome(B, [{"sku": 2}]))
    ra, rb = req(A), req(B)
    error = Outcome(ra.fp, ra.url, ra.host, "done", page=page(ra.url, status=500, body=b"e"))
    gone = Outcome(rb.fp, rb.url, rb.host, "done", page=page(rb.url, status=404, body=b"n"))
    run(store, error, gone)
    assert feed(db) == {("removed", "2")}


def test_recent_stats_are_the_clean_runs_of_the_spider_oldest_first(store: CrawlStore) -> None:
    for n, code in enumerate((0, 1, 4, 0, 0)):
        run_id = store.begin_run("shop")
        store.end_run(run_id, exit_code=code, finish_reason="x", stats={"items": n})
    other = store.begin_run("other")
    store.end_run(other, exit_code=0, finish_reason="finished", stats={"items": 99})
    killed = store.begin_run("shop")  # never finished
    assert [s["items"] for s in store.recent_stats("shop", killed + 1, 5)] == [0, 3, 4]
    assert [s["items"] for s in store.recent_stats("shop", 5, 2)] == [0, 3]


def test_run_item_count_counts_parsed_and_kept_items_of_the_run(store: CrawlStore) -> None:
    first = run(store, outcome(A, [{"sku": 1}, {"sku": 2}]))
    assert store.run_item_count(first) == 2
    r = req(A)
    unchanged = Outcome(r.fp, r.url, r.host, "done", page=page(r.url, status=304, body=b""))
    second = run(store, unchanged, outcome(B, [{"sku": 3}]))
    # A's two items were kept (its page unchanged), B's one parsed: what max_drop compares.
    assert store.run_item_count(second) == 3
    assert store.run_item_count(first) == 0  # its pages were fetched again by the second
