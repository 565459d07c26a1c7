"""The SQLite frontier's indexes: deduplication by ``(url, fp)``, lookups by fingerprint only
through ``frontier_taken``, and every statement of an entry's life served by an index (a real
file; the plan of each statement the store actually ran, read back with EXPLAIN QUERY PLAN)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from crawler.messages import NewRequest, Outcome
from crawler.store.schema import SCHEMA_VERSION
from crawler.store.sqlite import Store
from crawler.urls import canonicalize_url, fingerprint, url_host

NOW = 1_000_000.0


def _req(url: str, **kw: object) -> NewRequest:
    url = canonicalize_url(url)
    return NewRequest(fp=fingerprint(url), url=url, host=url_host(url), **kw)  # type: ignore[arg-type]


def _indexes(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {row[1]: row[2] for row in conn.execute("PRAGMA index_list(frontier)")}
    finally:
        conn.close()


def test_a_link_seen_again_is_not_queued_again_and_a_dont_filter_copy_is(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "c.db") as store:
        a = _req("http://a.test/x")
        assert store.add_follows([(a.fp, a.url, a.host)], depth=1) == 1
        assert store.add_follows([(a.fp, a.url, a.host)] * 2, depth=2) == 0
        assert store.add([a]) == 0
        # The same URL under another fingerprint (a request with dont_filter) is another entry.
        assert store.add([NewRequest(fp=12345, url=a.url, host=a.host)]) == 1
        assert store.counts()["queued"] == 2


def test_a_version_5_file_loses_its_fingerprint_index_and_keeps_deduplicating(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v5.db"
    with Store(path) as store:
        a = _req("http://a.test/a")
        store.add([a, _req("http://a.test/b")])
    # Make it what version 5 left: a unique index on fp alone and no frontier_key.
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP INDEX frontier_key; DROP INDEX frontier_taken;"
        " CREATE UNIQUE INDEX frontier_fp ON frontier (fp); PRAGMA user_version = 5;"
    )
    conn.close()
    with Store(path) as store:
        assert store.counts()["queued"] == 2
        assert store.add([a]) == 0
        assert store.add([_req("http://a.test/c")]) == 1
    indexes = _indexes(path)
    assert "frontier_fp" not in indexes
    assert indexes["frontier_key"] == 1 and indexes["frontier_taken"] == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    conn.close()


def test_every_statement_on_one_entry_is_served_by_an_index(tmp_path: Path) -> None:
    """A statement that names an entry by ``fp`` without repeating the partial index's
    condition would scan the whole frontier: millions of rows in a big crawl."""
    statements: list[str] = []
    with Store(tmp_path / "c.db") as store:
        store.conn.set_trace_callback(statements.append)
        store.add([_req(f"http://a.test/{n}") for n in range(6)])
        store.add([_req("http://a.test/0", lastmod=NOW + 10)])  # a sitemap's newer lastmod
        jobs = store.take("a.test", 6, NOW)
        done, failed, retry, *died = jobs
        store.record(
            [
                Outcome(done.fp, done.url, done.host, "done"),
                Outcome(failed.fp, failed.url, failed.host, "failed"),
                Outcome(retry.fp, retry.url, retry.host, "retry", retry_at=NOW + 5),
            ],
            run_id=1,
        )
        dead = [job.fp for job in died]
        assert store.requeue(dead, count_attempt=True) == 3
        assert store.give_up(dead, max_attempts=1, kind="worker_died", message="m", run_id=1)
        store.add([_req(done.url, lastmod=NOW + 10)])
        store.schedule_recrawl(NOW + 20, None, [done.fp, failed.fp])
        store.conn.set_trace_callback(None)
        on_one_entry = [
            sql
            for sql in statements
            if "frontier" in sql
            and any(key in sql for key in ("fp =", "id =", "url ="))
            and not sql.lstrip().upper().startswith("INSERT")
        ]
        assert len(on_one_entry) >= 10, on_one_entry
        for sql in on_one_entry:
            plan = " ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "SCAN frontier" not in plan, (sql, plan)
            assert "frontier" in plan and ("INDEX" in plan or "PRIMARY KEY" in plan), (sql, plan)
        # The outcomes and the sitemap's lastmod changed the entries they name.
        states = dict(store.conn.execute("SELECT url, state FROM frontier").fetchall())
        assert states[done.url] == "queued" and states[failed.url] == "queued"
        assert states[retry.url] == "queued" and sorted(states.values()).count("failed") == 3
