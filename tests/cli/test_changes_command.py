"""``crawler changes``: its options and its errors, over real SQLite files and real PostgreSQL
databases (``crawl_db``, ``postgres``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from crawler.messages import Outcome
from crawler.store import open_store
from tests.kit.postgres import PostgresServer
from tests.kit.project import invoke, make_project
from tests.kit.site import Site
from tests.store.test_store import page, req


def shop(db: Path | str) -> None:
    store = open_store(db)
    try:
        for price in (10, 12):
            run_id = store.begin_run("shop")
            r = req("http://shop.test/a")
            store.add([r])
            item = {"sku": "x", "price": price}
            o = Outcome(r.fp, r.url, r.host, "done", page=page(r.url, body=str(price).encode()),
                        items=(item,), item_keys=("x",), callback="parse")  # fmt: skip
            store.record([o], run_id=run_id, track_items=True)
            store.end_run(run_id, exit_code=0, finish_reason="finished", stats={})
    finally:
        store.close()


def test_formats_and_windows(crawl_db: Callable[[str], Path | str]) -> None:
    db = crawl_db("shop")
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


SPIDER = """
from crawler import Spider

class Titles(Spider):
    name = "titles"

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
"""


@pytest.mark.timeout(60)
def test_run_with_a_failing_gate_exits_1_and_names_the_field(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(make_project(tmp_path, {"titles.py": SPIDER}))
    host = site.add_host("127.0.0.2", {"/": "<html><body>no title</body></html>"})
    args = ("-a", f"start_urls=http://{host}/", "-s", "robots=false", "--workers", "1")
    result = invoke("run", "titles", *args, "-s", "min_field_fill=title=0.9,url=1")
    assert result.exit_code == 1
    assert "title filled in 0% of items, below min_field_fill 90%" in result.stderr
    assert "url filled" not in result.stderr
    bad = invoke("run", "titles", *args, "-s", "min_field_fill=title")
    assert bad.exit_code == 2 and "field=rate" in bad.stderr


def test_postgres_without_history_or_server(postgres: PostgresServer) -> None:
    empty = postgres.database()
    no_runs = invoke("changes", "shop", "--db", empty)
    assert no_runs.exit_code == 1 and "has no runs table" in no_runs.stderr
    with psycopg.connect(empty, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (id BIGINT PRIMARY KEY, spider TEXT, started_at FLOAT8)")
    no_history = invoke("changes", "shop", "--db", empty)
    assert no_history.exit_code == 1 and "no item history" in no_history.stderr
    # A server that is not there: exit 1, and the password is not in the message.
    gone = f"postgresql://crawler:hunter2@127.0.0.1:{postgres.port}/nosuchdb"
    down = invoke("changes", "shop", "--db", gone)
    assert down.exit_code == 1 and "cannot open" in down.stderr
    assert "hunter2" not in down.stdout + down.stderr
