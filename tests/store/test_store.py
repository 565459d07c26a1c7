"""crawler.store.Store against real SQLite files under tmp_path (never a mock)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

import crawler.store as storage
from crawler.errors import StorageError
from crawler.messages import Failure, Follow, NewRequest, Outcome, Page
from crawler.store import Store
from crawler.store.postgres import Store as PgStore
from crawler.urls import canonicalize_url, fingerprint, url_host

NOW = 1_000_000.0


def req(url: str, **kw: object) -> NewRequest:
    url = canonicalize_url(url)
    return NewRequest(fp=fingerprint(url), url=url, host=url_host(url), **kw)  # type: ignore[arg-type]


def follow(url: str) -> Follow:
    url = canonicalize_url(url)
    return (fingerprint(url), url, url_host(url))


def page(
    url: str, *, status: int = 200, body: bytes = b"<html>", depth: int = 0, **kw: object
) -> Page:
    values: dict[str, object] = {
        "url": url,
        "status": status,
        "headers": '{"content-type": "text/html"}',
        "content_type": "text/html",
        "size": len(body),
        "body": body,
        "content_hash": "h-" + body.decode(),
        "etag": None,
        "last_modified": None,
        "location": None,
        "depth": depth,
        "fetched_at": NOW,
        "elapsed_ms": 1.5,
    }
    values.update(kw)
    return Page(**values)  # type: ignore[arg-type]


def done(job_url: str, **kw: object) -> Outcome:
    r = req(job_url)
    values: dict[str, object] = {"page": page(r.url)}
    values.update(kw)
    return Outcome(fp=r.fp, url=r.url, host=r.host, state="done", **values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests on both backends: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").database()
        s: Any = PgStore(url, clock=lambda: NOW)
    else:
        s = Store(tmp_path / "data" / "crawl.db", clock=lambda: NOW)
    yield s
    s.close()


def _sql(store: Store, sql: str) -> str:
    if isinstance(store, PgStore):
        return sql.replace("?", "%s").replace("ORDER BY rowid", "ORDER BY ctid")
    return sql


def q(store: Store, sql: str, params: tuple[object, ...] = ()) -> Any:
    """A cursor over ``sql`` on either backend (``?`` placeholders)."""
    return store.conn.execute(_sql(store, sql), params)


def dict_rows(store: Store, sql: str) -> list[dict[str, Any]]:
    cur = q(store, sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def reopen(store: Store, fresh: bool = False) -> Any:
    if isinstance(store, PgStore):
        return PgStore(store.url, fresh=fresh)
    return Store(store.path, fresh=fresh)


def count(store: Store, table: str, where: str = "1 = 1", *params: object) -> int:
    return int(q(store, f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0])


def test_schema_is_plain_and_readable_by_sqlite_utils(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "c.db"
    with Store(path) as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert repr(s).endswith("0 queued 0 in flight 0 done 0 failed>")
    db = sqlite_utils.Database(path)
    assert set(db.table_names()) >= {"frontier", "pages", "items", "links", "errors", "runs"}
    frontier_cols = set(db.table("frontier").columns_dict)
    assert {
        "fp",
        "url",
        "host",
        "state",
        "attempts",
        "not_before",
        "etag",
        "next_due",
    } <= frontier_cols
    assert {"url", "status", "body", "run_id"} <= set(db.table("pages").columns_dict)
    assert db.table("frontier").pks == ["id"]  # deduplicated by the unique (url, fp) index
    key = next(i for i in db.table("frontier").indexes if i.name == "frontier_key")
    assert key.unique and key.columns == ["url", "fp"]
    assert db.table("pages").pks == ["url"]
    db.close()
    # Opening again keeps everything (the schema is created only when missing).
    with Store(path) as s:
        assert s.counts()["queued"] == 0


def test_add_dedups_and_counts(store: Store) -> None:
    assert store.add([req("http://a.com/1"), req("http://a.com/2")]) == 2
    assert store.add([req("http://a.com/1"), req("http://b.com/1")]) == 1
    assert store.add_follows([follow("http://a.com/2"), follow("http://a.com/3")], depth=2) == 1
    assert store.add_follows([], depth=1) == 0
    assert store.counts() == {"queued": 4, "in_flight": 0, "done": 0, "failed": 0}
    assert store.recount() == store.counts()
    row = q(
        store, "SELECT depth, callback, priority, state FROM frontier WHERE url = 'http://a.com/3'"
    ).fetchone()
    assert row == (2, None, 0, "queued")


def test_add_keeps_request_fields(store: Store) -> None:
    r = req(
        "http://a.com/form",
        method="POST",
        headers=(("X-A", "1"),),
        body=b"q=1",
        callback="parse_form",
        priority=3,
        meta={"k": [1, 2]},
        depth=4,
        redirect_urls=("http://a.com/old",),
    )
    store.add([r])
    (job,) = store.take("a.com", 10, NOW)
    assert (job.fp, job.url, job.method, job.headers, job.body) == (
        r.fp,
        r.url,
        "POST",
        (("X-A", "1"),),
        b"q=1",
    )
    assert (job.callback, job.meta, job.depth, job.attempt) == ("parse_form", {"k": [1, 2]}, 4, 0)
    assert job.redirect_urls == ("http://a.com/old",)


def test_take_orders_by_priority_then_insertion_and_filters_host(store: Store) -> None:
    store.add([req("http://a.com/low1"), req("http://b.com/x"), req("http://a.com/low2")])
    store.add([req("http://a.com/high", priority=5), req("http://a.com/neg", priority=-1)])
    store.add_follows([follow("http://a.com/f")], depth=1)
    jobs = store.take("a.com", 3, NOW)
    assert [j.url.rsplit("/", 1)[1] for j in jobs] == ["high", "low1", "low2"]
    assert store.counts() == {"queued": 3, "in_flight": 3, "done": 0, "failed": 0}
    assert [j.url for j in store.take("a.com", 10, NOW)] == ["http://a.com/f", "http://a.com/neg"]
    assert store.take("a.com", 10, NOW) == []
    assert store.take("b.com", 0, NOW) == []
    assert count(store, "frontier", "state = 'in_flight'") == 5
    assert store.hosts_with_work(NOW) == ["b.com"]


def test_not_before_and_hosts_with_work(store: Store) -> None:
    assert store.hosts_with_work(NOW) == []
    assert not store.has_queued()
    assert store.next_not_before(NOW) is None
    store.add([req("http://a.com/1"), req("http://b.com:8080/1"), req("http://c.com/1")])
    assert store.hosts_with_work(NOW) == ["a.com", "b.com:8080", "c.com"]
    (job,) = store.take("a.com", 1, NOW)
    stats = store.record(
        [Outcome(fp=job.fp, url=job.url, host="a.com", state="retry", retry_at=NOW + 30)],
        run_id=None,
    )
    assert stats.retried == 1
    assert store.hosts_with_work(NOW) == ["b.com:8080", "c.com"]
    assert store.hosts_with_work(NOW + 30) == ["a.com", "b.com:8080", "c.com"]
    assert store.next_not_before(NOW) == NOW + 30
    assert store.next_not_before(NOW + 30) is None
    assert store.take("a.com", 5, NOW) == []
    (again,) = store.take("a.com", 5, NOW + 31)
    assert again.attempt == 1
    assert store.has_queued()


def test_record_batch_pages_items_links_errors_follows(store: Store) -> None:
    store.add([req("http://a.com/", depth=0)])
    (job,) = store.take("a.com", 1, NOW)
    outcome = Outcome(
        fp=job.fp,
        url=job.url,
        host=job.host,
        state="done",
        page=page(job.url, etag='"v1"', last_modified="Mon"),
        items=({"title": "Home", "n": 1}, {"title": "Two", "tags": ["x", "y"], "price": 2.5}),
        follows=(follow("http://a.com/a"), follow("http://b.com/b")),
        requests=(req("http://a.com/r", callback="parse_r", priority=2),),
        links=("http://a.com/a", "http://b.com/b"),
        failures=(Failure(url=job.url, kind="callback", message="boom", traceback="tb"),),
    )
    run_id = store.begin_run("s", {})
    stats = store.record([outcome], run_id=run_id, store_body=True, store_links=True)
    assert stats == storage.BatchStats(
        pages=1, items=2, errors=1, links=2, new_requests=3, done=1, bytes=6
    )
    assert store.counts() == {"queued": 3, "in_flight": 0, "done": 1, "failed": 0}
    assert store.recount() == store.counts()
    assert count(store, "frontier", "depth = 1 AND callback IS NULL") == 2
    assert count(store, "frontier", "callback = 'parse_r' AND priority = 2") == 1
    item_rows = dict_rows(store, "SELECT * FROM items ORDER BY rowid")
    assert item_rows[0]["title"] == "Home" and item_rows[0]["page_url"] == job.url
    assert json.loads(item_rows[1]["tags"]) == ["x", "y"] and item_rows[1]["price"] == 2.5
    assert item_rows[1]["run_id"] == run_id
    fr = q(
        store,
        "SELECT state, attempts, etag, last_modified, content_hash, fetched_at FROM frontier"
        " WHERE fp = ?",
        (job.fp,),
    ).fetchone()
    assert fr == ("done", 1, '"v1"', "Mon", "h-<html>", NOW)
    assert count(store, "errors", "kind = 'callback' AND run_id = ?", run_id) == 1
    assert count(store, "links") == 2

    # Recording the same page again (a re-parse, or a redo after a crash) replaces, never adds.
    changed = Outcome(
        fp=job.fp,
        url=job.url,
        host=job.host,
        state="done",
        page=page(job.url, body=b"new"),
        items=({"title": "Only"},),
        links=("http://a.com/a",),
    )
    stats = store.record([changed], run_id=run_id, store_links=True)
    assert (stats.items, stats.new_requests, stats.links) == (1, 0, 0)
    assert count(store, "pages") == 1
    assert q(store, "SELECT body FROM pages").fetchone()[0] == b"new"
    assert [r["title"] for r in dict_rows(store, "SELECT title FROM items")] == ["Only"]
    assert count(store, "links") == 2


def test_record_is_all_or_nothing(store: Store) -> None:
    store.add([req("http://a.com/1"), req("http://a.com/2")])
    j1, j2 = store.take("a.com", 2, NOW)
    good = Outcome(fp=j1.fp, url=j1.url, host="a.com", state="done", page=page(j1.url))
    # A value SQLite cannot bind fails the second outcome, after the first was written.
    bad = Outcome(
        fp=j2.fp, url=j2.url, host="a.com", state="done", page=page(j2.url, etag=object())
    )
    with pytest.raises(StorageError):
        store.record([good, bad], run_id=None)
    assert count(store, "pages") == 0
    assert count(store, "frontier", "state = 'in_flight'") == 2
    assert store.counts() == {"queued": 0, "in_flight": 2, "done": 0, "failed": 0}


def test_record_failed_retry_and_store_body_off(store: Store) -> None:
    store.add([req("http://a.com/1"), req("http://a.com/2")])
    j1, j2 = store.take("a.com", 2, NOW)
    store.record(
        [
            Outcome(
                fp=j1.fp,
                url=j1.url,
                host="a.com",
                state="failed",
                failures=(Failure(url=j1.url, kind="connect", message="refused"),),
            ),
            Outcome(fp=j2.fp, url=j2.url, host="a.com", state="done", page=page(j2.url)),
        ],
        run_id=1,
        store_body=False,
    )
    assert store.counts() == {"queued": 0, "in_flight": 0, "done": 1, "failed": 1}
    assert q(store, "SELECT body, size FROM pages").fetchone() == (None, 6)
    assert count(store, "errors", "kind = 'connect'") == 1


def test_not_modified_keeps_page_and_items(store: Store) -> None:
    store.add([req("http://a.com/")])
    (job,) = store.take("a.com", 1, NOW)
    first = page(job.url, body=b"v1", etag='"e1"')
    o = Outcome(fp=job.fp, url=job.url, host="a.com", state="done", page=first, items=({"a": 1},))
    store.record([o], run_id=1)
    assert store.schedule_recrawl(NOW + 10, None, [job.fp]) == 1
    (again,) = store.take("a.com", 1, NOW + 10)
    assert (again.etag, again.attempt) == ('"e1"', 0)
    not_modified = page(job.url, status=304, body=b"", fetched_at=NOW + 10, content_hash=None)
    store.record(
        [Outcome(fp=job.fp, url=job.url, host="a.com", state="done", page=not_modified)], run_id=2
    )
    row = q(store, "SELECT status, body, etag, fetched_at, run_id FROM pages").fetchone()
    assert row == (200, b"v1", '"e1"', NOW + 10, 2)
    assert count(store, "items") == 1
    assert q(store, "SELECT etag, content_hash FROM frontier").fetchone() == (
        '"e1"',
        "h-v1",
    )


def test_schedule_recrawl_due_pages(store: Store) -> None:
    store.add([req("http://a.com/old"), req("http://a.com/new"), req("http://a.com/queued")])
    old, new = store.take("a.com", 2, NOW)
    store.record(
        [
            Outcome(
                fp=old.fp,
                url=old.url,
                host="a.com",
                state="done",
                page=page(old.url, fetched_at=NOW - 100, last_modified="Tue"),
            ),
            Outcome(fp=new.fp, url=new.url, host="a.com", state="done", page=page(new.url)),
        ],
        run_id=1,
        recrawl_after=50,
    )
    assert q(store, "SELECT next_due FROM frontier WHERE fp = ?", (old.fp,)).fetchone() == (
        NOW - 50,
    )
    assert store.schedule_recrawl(NOW, None) == 0
    assert store.schedule_recrawl(NOW, 50.0) == 1
    assert store.counts() == {"queued": 2, "in_flight": 0, "done": 1, "failed": 0}
    jobs = store.take("a.com", 5, NOW)
    assert {j.url: j.last_modified for j in jobs} == {old.url: "Tue", "http://a.com/queued": None}


def test_items_columns_appear_and_reserved_names(store: Store) -> None:
    store.add([req("http://a.com/")])
    (job,) = store.take("a.com", 1, NOW)
    items = (
        {"page_url": "mine", "Title": "x", "nested": {"a": [1]}, "flag": True, "raw": b"\x00"},
        {"title": "y", "new col": 3, 'quo"te': None},
    )
    store.record(
        [
            Outcome(
                fp=job.fp, url=job.url, host="a.com", state="done", page=page(job.url), items=items
            )
        ],
        run_id=1,
    )
    rows = dict_rows(store, "SELECT * FROM items ORDER BY rowid")
    assert rows[0]["_page_url"] == "mine" and rows[0]["page_url"] == job.url
    assert rows[0]["Title"] == "x" and rows[1]["Title"] == "y"  # SQLite names ignore case
    assert json.loads(rows[0]["nested"]) == {"a": [1]}
    assert (rows[0]["flag"], rows[0]["raw"], rows[1]["new col"]) == (1, b"\x00", 3)
    assert 'quo"te' in rows[1]
    # A new Store sees the columns created by the old one.
    store.close()
    with reopen(store) as again:
        assert "new col" in again._item_columns


def test_reset_in_flight_and_requeue(store: Store) -> None:
    store.add([req(f"http://a.com/{i}") for i in range(5)])
    jobs = store.take("a.com", 5, NOW)
    assert store.requeue([jobs[0].fp, jobs[1].fp, 12345]) == 2
    assert store.counts()["in_flight"] == 3
    # A crash leaves rows in flight; the next run puts them back.
    with reopen(store) as s:
        assert s.counts() == {"queued": 2, "in_flight": 3, "done": 0, "failed": 0}
        assert s.reset_in_flight() == 3
        assert s.counts() == {"queued": 5, "in_flight": 0, "done": 0, "failed": 0}
        assert s.reset_in_flight() == 0


def test_fresh_clears_crawl_and_keeps_runs(store: Store) -> None:
    run_id = store.begin_run("spider", {"per_host": 2})
    store.add([req("http://a.com/")])
    (job,) = store.take("a.com", 1, NOW)
    store.record([done(job.url, items=({"x": 1},))], run_id=run_id)
    store.end_run(run_id, exit_code=0, finish_reason="finished", stats={"pages": 1})
    with reopen(store, fresh=True) as s:
        assert s.counts() == {"queued": 0, "in_flight": 0, "done": 0, "failed": 0}
        assert count(s, "pages") == count(s, "items") == 0
        assert "x" not in s._item_columns
        (run,) = s.runs("spider")
        assert run["stats"] == {"pages": 1} and run["settings"] == {"per_host": 2}
        assert run["exit_code"] == 0 and run["finish_reason"] == "finished"
        assert run["pid"] == os.getpid()


def test_runs_api(store: Store) -> None:
    assert store.last_run("a") is None
    r1 = store.begin_run("a", {})
    r2 = store.begin_run("b", {})
    r3 = store.begin_run("a", {})
    store.end_run(r1, exit_code=4, finish_reason="max_pages", stats={})
    assert [r["id"] for r in store.runs()] == [r1, r2, r3]
    assert [r["id"] for r in store.runs("a")] == [r1, r3]
    last = store.last_run("a")
    assert last is not None and last["id"] == r3 and last["finished_at"] is None
    assert store.runs("a")[0]["exit_code"] == 4


# --- storage faults ---------------------------------------------------------------------------


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is a text file, not SQLite at all" * 100)
    with pytest.raises(StorageError, match="not a SQLite database"):
        Store(path)


def test_folder_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot create the folder"):
        Store(blocker / "sub" / "c.db")


def test_path_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a folder"):
        Store(tmp_path)


def _lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO runs (spider, started_at) VALUES ('other', 0)")
    return other


def test_locked_database_clear_error_after_timeout(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    sqlite3.connect(path).close()  # an empty file: opening must create the schema
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"locked by another writer; waited 0\.3s"):
            Store(path, busy_timeout=0.3)
        assert time.monotonic() - started >= 0.25
    finally:
        other.execute("ROLLBACK")
        other.close()
    Store(path).close()


def test_reader_opens_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Store(path).close()
    other = _lock(path)
    try:
        with Store(path, busy_timeout=0.1) as s:
            assert s.runs() == []  # the other transaction is not committed
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_locked_database_waits_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    s = Store(path, busy_timeout=5)
    other = _lock(path)

    def release() -> None:
        other.execute("COMMIT")
        other.close()

    timer = threading.Timer(0.3, release)
    timer.start()
    try:
        started = time.monotonic()
        assert s.add([req("http://a.com/")]) == 1
        assert time.monotonic() - started >= 0.2
    finally:
        timer.join()
        s.close()


def test_locked_write_times_out_and_store_stays_usable(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    s = Store(path, busy_timeout=0.2)
    other = _lock(path)
    with pytest.raises(StorageError, match="locked"):
        s.add([req("http://a.com/")])
    other.execute("ROLLBACK")
    other.close()
    assert s.counts()["queued"] == 0
    assert s.add([req("http://a.com/")]) == 1
    s.close()


# --- crash safety -----------------------------------------------------------------------------

CRASH_WORKER = textwrap.dedent(
    """
    import sys, time
    from crawler.urls import fingerprint, url_host
    from crawler.messages import Outcome, Page
    from crawler.store import Store

    s = Store(sys.argv[1])
    s.reset_in_flight()
    run_id = s.begin_run("crash", {})
    hosts = ["a.test", "b.test", "c.test"]
    seeds = [f"http://{h}/p{i}" for h in hosts for i in range(200)]
    s.add_follows([(fingerprint(u), u, url_host(u)) for u in seeds], depth=0)
    while s.has_queued():
        for host in s.hosts_with_work(time.time()):
            jobs = s.take(host, 7, time.time())
            outs = []
            for j in jobs:
                page = Page(url=j.url, status=200, headers="{}", content_type="text/html",
                            size=1000, body=b"x" * 1000, content_hash="h", etag=None,
                            last_modified=None, location=None, depth=j.depth,
                            fetched_at=time.time(), elapsed_ms=1.0)
                items = tuple({"url": j.url, "k": k, "blob": "y" * 500} for k in range(3))
                outs.append(Outcome(fp=j.fp, url=j.url, host=host, state="done", page=page,
                                    items=items))
            s.record(outs, run_id=run_id)
            print(len(outs), flush=True)
    s.end_run(run_id, exit_code=0, finish_reason="finished", stats={})
    print("finished", flush=True)
    """
)


def _check_consistent(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        pages = conn.execute("SELECT count(*) FROM pages").fetchone()[0]
        not_done = conn.execute(
            "SELECT count(*) FROM pages JOIN frontier USING (url) WHERE frontier.state != 'done'"
        ).fetchone()[0]
        assert not_done == 0
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3 * pages
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT page_url, k FROM items GROUP BY 1, 2 HAVING count(*) > 1)"
        ).fetchone()[0]
        assert dupes == 0
        return int(pages)
    finally:
        conn.close()


def test_kill_9_mid_batch_leaves_a_consistent_db(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    script = tmp_path / "worker.py"
    script.write_text(CRASH_WORKER)
    seen = []
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        # Let it record a few batches (a different number each round), then kill it mid-write.
        for _ in range(3 + 5 * round_):
            line = proc.stdout.readline()
            assert line and line != "finished\n"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        seen.append(_check_consistent(path))
    assert seen == sorted(seen) and seen[0] > 0
    # A final run completes the crawl: every page once, every item once.
    out = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.endswith("finished\n")
    assert _check_consistent(path) == 600
    with Store(path) as s:
        assert s.counts() == {"queued": 0, "in_flight": 0, "done": 600, "failed": 0}
        runs = s.runs("crash")
        assert len(runs) == 4
        assert [r["finish_reason"] for r in runs] == [None, None, None, "finished"]


def test_public_api() -> None:
    assert set(storage.__all__) == {
        "BatchStats",
        "CrawlStore",
        "ROBOTS_COLUMNS",
        "Store",
        "database_file",
        "is_database_url",
        "open_store",
    }
    for name in storage.__all__:
        assert hasattr(storage, name), name
