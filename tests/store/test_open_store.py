"""The storage seam: ``CrawlStore`` is what the engine calls, ``open_store`` picks the backend,
both backends implement it (a real PostgreSQL from tests/kit/postgres.py), and the SQLite
schema sqlite-utils creates is the one earlier files have (real files only)."""

from __future__ import annotations

import ast
import inspect
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import crawler
from crawler.cli import cli
from crawler.engine import crawl
from crawler.errors import StorageError
from crawler.messages import NewRequest
from crawler.robots import RobotsPolicy
from crawler.settings import Settings
from crawler.store import ROBOTS_COLUMNS, CrawlStore, Store, open_store
from crawler.store.api import NodeStore
from crawler.store.postgres import Store as PgStore
from crawler.store.schema import SCHEMA_VERSION
from crawler.store.sqlite import Store as SQLiteStore
from tests.kit.crawl import TitleSpider
from tests.kit.postgres import PostgresServer

ENGINE = Path(crawler.__file__).parent / "engine"


def _protocol_methods(protocol: type = CrawlStore) -> set[str]:
    return {
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    }


def _engine_store_calls() -> set[str]:
    """Every ``store.X`` / ``self.store.X`` the engine's modules touch."""
    names = set()
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "store") or (
                isinstance(owner, ast.Attribute) and owner.attr == "store"
            ):
                names.add(node.attr)
    return names


def test_the_protocol_is_exactly_what_the_engine_calls() -> None:
    # NodeStore: what a node of a run shared over PostgreSQL adds (crawler.engine.nodes).
    assert _engine_store_calls() == _protocol_methods() | _protocol_methods(NodeStore)
    assert not _protocol_methods() & _protocol_methods(NodeStore)


@pytest.mark.parametrize("name", sorted(_protocol_methods(NodeStore)))
def test_postgres_store_implements_each_node_method_with_the_same_signature(name: str) -> None:
    want = inspect.signature(getattr(NodeStore, name))
    got = inspect.signature(getattr(PgStore, name))
    assert list(got.parameters.items()) == list(want.parameters.items()), name


@pytest.mark.parametrize("name", sorted(_protocol_methods()))
def test_sqlite_store_implements_each_method_with_the_same_signature(name: str) -> None:
    want = inspect.signature(getattr(CrawlStore, name))
    got = inspect.signature(getattr(Store, name))
    assert list(got.parameters.items()) == list(want.parameters.items()), name
    assert got.return_annotation == want.return_annotation, name


def test_open_store_with_a_path_is_sqlite(tmp_path: Path) -> None:
    store = open_store(tmp_path / "sub" / "c.db")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.counts() == {"queued": 0, "in_flight": 0, "done": 0, "failed": 0}
    finally:
        store.close()
    assert (tmp_path / "sub" / "c.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://crawler:s3cret@127.0.0.1:9/crawl",
        "postgres://crawler:s3cret@127.0.0.1:9/crawl",
    ],
)
def test_an_unreachable_postgresql_url_is_a_clear_error_and_creates_nothing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="cannot open database") as info:
        open_store(url, busy_timeout=2)
    assert "s3cret" not in str(info.value)  # a password never reaches a log
    assert "crawler@127.0.0.1:9/crawl" in str(info.value)
    # The engine takes no run lock for a server: no file appears next to anything.
    with pytest.raises(StorageError, match="cannot open database"):
        crawl(TitleSpider, settings=Settings(), db_path=url, busy_timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_open_store_with_a_postgresql_url_is_postgres(postgres: PostgresServer) -> None:
    store = open_store(postgres.database())
    try:
        assert isinstance(store, PgStore)
        assert store.counts() == {"queued": 0, "in_flight": 0, "done": 0, "failed": 0}
    finally:
        store.close()


@pytest.mark.parametrize("name", sorted(_protocol_methods()))
def test_postgres_store_implements_each_method_with_the_same_signature(name: str) -> None:
    want = inspect.signature(getattr(CrawlStore, name))
    got = inspect.signature(getattr(PgStore, name))
    assert list(got.parameters.items()) == list(want.parameters.items()), name


def test_two_connections_taking_from_one_host_get_disjoint_rows(
    postgres: PostgresServer,
) -> None:
    url = postgres.database()
    with PgStore(url) as a, PgStore(url) as b:
        a.add(
            NewRequest(fp=i, url=f"http://h.test/{i}", host="h.test", priority=i % 3)
            for i in range(1, 41)
        )
        taken = [a.take("h.test", 7, 1e12), b.take("h.test", 7, 1e12)]
        while any(taken[-2:]):
            taken += [a.take("h.test", 7, 1e12), b.take("h.test", 7, 1e12)]
        fps = [job.fp for jobs in taken for job in jobs]
        assert sorted(fps) == list(range(1, 41))  # each row handed out exactly once
        assert [j.fp for j in taken[0]] == [2, 5, 8, 11, 14, 17, 20]  # priority, then age


def test_another_url_scheme_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="unknown database URL scheme 'mysql'"):
        open_store("mysql://db/crawl")
    assert list(tmp_path.iterdir()) == []


def test_cli_run_with_an_unreachable_postgresql_url_could_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spider = tmp_path / "one.py"
    spider.write_text(
        "from crawler import Spider\n\nclass One(Spider):\n    name = 'one'\n"
        "    start_urls = ['http://127.0.0.1:9/']\n"
    )
    result = CliRunner().invoke(
        cli, ["run", str(spider), "--db", "postgresql://u:pw@127.0.0.1:9/crawl"]
    )
    assert result.exit_code == 3, result.output
    assert "cannot open database postgresql://u@127.0.0.1:9/crawl" in result.stderr
    assert "pw" not in result.stderr.replace("postgresql", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.py"]


# --- the schema, now declared as data and created by sqlite-utils -----------------------------

# The DDL of schema version 1 as earlier releases wrote it by hand (no robots table, no
# frontier.next_due), with rows in it.
VERSION_1 = """
CREATE TABLE frontier (fp INTEGER PRIMARY KEY, url TEXT NOT NULL, host TEXT NOT NULL,
    method TEXT NOT NULL DEFAULT 'GET', headers TEXT, body BLOB, callback TEXT, meta TEXT,
    depth INTEGER NOT NULL DEFAULT 0, priority INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,
    redirect_urls TEXT, discovered_at REAL, updated_at REAL, etag TEXT, last_modified TEXT,
    content_hash TEXT, fetched_at REAL);
CREATE TABLE pages (url TEXT PRIMARY KEY NOT NULL, status INTEGER, headers TEXT,
    content_type TEXT, size INTEGER, body BLOB, content_hash TEXT, etag TEXT,
    last_modified TEXT, location TEXT, depth INTEGER, fetched_at REAL, elapsed_ms REAL,
    run_id INTEGER);
CREATE TABLE items (page_url TEXT NOT NULL, run_id INTEGER, title TEXT);
CREATE TABLE links (from_url TEXT NOT NULL, to_url TEXT NOT NULL, UNIQUE (from_url, to_url));
CREATE TABLE errors (id INTEGER PRIMARY KEY, url TEXT, kind TEXT, message TEXT,
    traceback TEXT, run_id INTEGER, at REAL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, spider TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, exit_code INTEGER, finish_reason TEXT, stats TEXT, settings TEXT,
    pid INTEGER, hostname TEXT);
INSERT INTO frontier (fp, url, host, state) VALUES (7, 'http://a.test/', 'a.test', 'done');
INSERT INTO items (page_url, title) VALUES ('http://a.test/', 'A');
INSERT INTO runs (spider, started_at) VALUES ('old', 1.0);
PRAGMA user_version = 1;
"""


def _table_info(path: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA table_info({table})").fetchall()
    finally:
        conn.close()


def test_an_old_file_is_migrated_to_the_schema_a_new_file_gets(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    conn = sqlite3.connect(old)
    conn.executescript(VERSION_1)
    conn.close()
    with Store(old) as s:
        assert s.counts()["done"] == 1
        assert [r["spider"] for r in s.runs()] == ["old"]
    Store(new).close()
    for table in ("frontier", "pages", "errors", "runs", "robots"):
        assert _table_info(old, table) == _table_info(new, table), table
    # A link is unique by its pair either way: a constraint in old files, the key in new ones.
    for path in (old, new):
        assert [row[1:4] for row in _table_info(path, "links")] == [
            ("from_url", "TEXT", 1),
            ("to_url", "TEXT", 1),
        ]
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # The frontier was re-keyed (integer id, deduplicated by (url, fp)) with its rows kept.
        assert conn.execute("SELECT id, fp, url, state FROM frontier").fetchall() == [
            (1, 7, "http://a.test/", "done")
        ]
        indexes = {row[1]: row[2] for row in conn.execute("PRAGMA index_list(frontier)")}
        assert indexes["frontier_key"] == 1 and "frontier_queue" in indexes
        assert "frontier_fp" not in indexes
        assert conn.execute("SELECT page_url, title FROM items").fetchall() == [
            ("http://a.test/", "A")
        ]
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_robots_rows_round_trip_and_replace(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    policy = RobotsPolicy(
        kind="rules",
        status=200,
        fetched_at=100.0,
        expires_at=200.0,
        user_agent="bot",
        crawl_delay_max=10.0,
        text="User-agent: *\nDisallow: /x\n",
    )
    row = {name: getattr(policy, name) for name in ROBOTS_COLUMNS}
    target = (
        request.getfixturevalue("postgres").database()
        if backend == "postgres"
        else tmp_path / "r.db"
    )
    with open_store(target) as s:  # type: ignore[attr-defined]
        s.put_robots("a.test", row)
        s.put_robots("b.test", {**row, "fetched_at": 10.0})
        s.put_robots("a.test", {**row, "status": 404, "kind": "allow_all", "text": ""})
        got = dict(s.robots_policies(since=50.0))
    assert list(got) == ["a.test"]
    assert got["a.test"] == {**row, "status": 404, "kind": "allow_all", "text": ""}
    assert list(got["a.test"]) == list(ROBOTS_COLUMNS)
