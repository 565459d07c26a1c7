"""``crawler changes``: its options and its errors, over real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crawler.messages import Outcome
from crawler.store import Store
from tests.kit.project import invoke
from tests.store.test_store import page, req


def shop(db: Path) -> None:
    with Store(db) as store:
        for price in (10, 12):
            run_id = store.begin_run("shop")
            r = req("http://shop.test/a")
            store.add([r])
            item = {"sku": "x", "price": price}
            o = Outcome(r.fp, r.url, r.host, "done", page=page(r.url, body=str(price).encode()),
                        items=(item,), item_keys=("x",), callback="parse")  # fmt: skip
            store.record([o], run_id=run_id, track_items=True)
            store.end_run(run_id, exit_code=0, finish_reason="finished", stats={})


def test_formats_and_windows(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    shop(db)
    table = invoke("changes", "shop", "--db", str(db))
    assert table.exit_code == 0
    assert table.stdout.splitlines()[1].split() == ["changed", "x", "2", "price:", "10", "->", "12"]
    jsonl = invoke("changes", "shop", "--db", str(db), "--since-run", "0", "--format", "jsonl")
    assert '"change": "new"' in jsonl.stdout and '"price": 12' in jsonl.stdout
    csv = invoke("changes", "shop", "--db", str(db), "--since", "1h", "--format", "csv")
    assert csv.stdout.splitlines()[1].startswith("new,x,2,")
    none = invoke("changes", "shop", "--db", str(db), "--since-run", "2")
    assert none.exit_code == 0 and none.stdout == "" and "no changes" in none.stderr
    other = invoke("changes", "other", "--db", str(db), "--since-run", "0")
    assert other.stdout == ""  # only that spider's runs


def test_usage_and_missing_history(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    shop(db)
    both = invoke("changes", "shop", "--db", str(db), "--since-run", "1", "--since", "2d")
    assert both.exit_code == 2 and "not both" in both.stderr
    bad = invoke("changes", "shop", "--db", str(db), "--since", "soon")
    assert bad.exit_code == 2 and "--since" in bad.stderr
    missing = invoke("changes", "shop", "--db", str(tmp_path / "none.db"))
    assert missing.exit_code == 1 and "no database at" in missing.stderr
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, spider TEXT, started_at REAL)")
    no_history = invoke("changes", "shop", "--db", str(old))
    assert no_history.exit_code == 1 and "no item history" in no_history.stderr
