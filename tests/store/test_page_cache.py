"""The writer's page cache follows the frontier's size (crawler.store.connection._size_cache).

Real SQLite files under tmp_path; the cache size is read back from SQLite itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crawler.messages import Follow, Outcome, Page
from crawler.store import Store
from crawler.store.connection import CACHE_MAX_KIB, CACHE_MIN_KIB
from crawler.urls import fingerprint


def _cache_kib(store: Store) -> int:
    size = store.conn.execute("PRAGMA cache_size").fetchone()[0]
    # Negative: KiB; positive: pages.
    return -size if size < 0 else size * store.conn.execute("PRAGMA page_size").fetchone()[0] >> 10


def _follows(start: int, n: int) -> list[Follow]:
    urls = [f"http://h{i % 3}.example/u/{i}" for i in range(start, start + n)]
    return [(fingerprint(u), u, u.split("/")[2]) for u in urls]


def test_small_frontier_keeps_sqlite_default(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db") as store:
        store.add_follows(_follows(0, 1000), depth=1)
        assert _cache_kib(store) == CACHE_MIN_KIB


def test_cache_grows_with_the_frontier_and_is_sized_again_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Store(path) as store:
        store.add_follows(_follows(0, 150_000), depth=1)
        grown = _cache_kib(store)
        assert CACHE_MIN_KIB < grown < CACHE_MAX_KIB
        # Links queued by record() (the crawl's path) grow it too; it follows one batch behind.
        run_id = store.begin_run("t", {})
        body = b"<html></html>"
        for k in range(3):
            url = f"http://h0.example/page/{k}"
            page = Page(url, 200, "{}", "text/html", len(body), body, "h", None, None, None, 0,
                        0.0, 1.0)  # fmt: skip
            follows = tuple(_follows(1_000_000 + k * 60_000, 60_000))
            outcome = Outcome(fp=fingerprint(url), url=url, host="h0.example", state="done",
                              page=page, follows=follows)  # fmt: skip
            store.record([outcome], run_id=run_id)
        assert _cache_kib(store) > grown
        total = sum(store.counts().values())
    assert total == 150_000 + 3 * 60_000
    # A reopened crawl (a resume) sizes the cache from the rows it finds.
    with Store(path) as store:
        assert _cache_kib(store) == min(CACHE_MAX_KIB, total * 30 >> 10)
    # Only the writer's connection changes: a new connection has SQLite's default.
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA cache_size").fetchone()[0] == -2000
    finally:
        con.close()
