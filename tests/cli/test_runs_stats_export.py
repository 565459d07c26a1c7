"""``crawler runs``, ``crawler stats`` and ``crawler export`` on the database of a real crawl.

On both backends: the ``crawled`` project's run went to ``data/news.db`` or, with
``CRAWLER_DB`` set as cron would, to a PostgreSQL database. What is about files under data/
(a missing one, every spider database found there) is SQLite's.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.kit.postgres import PostgresServer
from tests.kit.project import invoke, make_project, restore_logging, subprocess_env
from tests.kit.site import Site

SPIDER = """
from crawler import Spider

class News(Spider):
    name = "news"
    custom_settings = {"robots": False, "workers": 1, "timeout": 5, "retries": 0}

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get(),
               "tags": ["a", "b"], "n": len(response.url)}
        yield from response.links()
"""


@dataclass(frozen=True)
class Crawled:
    """A project folder and where its news spider's crawl is: a path (relative to the
    folder) or a ``postgresql://`` URL."""

    root: Path
    db: str

    @property
    def postgres(self) -> bool:
        return self.db.startswith("postgresql://")


def execute(db: str, sql: str, *params: Any) -> None:
    """One statement (``?`` placeholders) on either backend, committed."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as pg:
            pg.execute(sql.replace("?", "%s"), params)
        return
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)
    conn.close()


def stored(project: Crawled, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` as a dict, in the order the export promises."""
    if project.postgres:
        with psycopg.connect(project.db) as pg:
            cur = pg.execute(f"SELECT * FROM {table} ORDER BY ctid")
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    with sqlite3.connect(project.root / project.db) as conn:
        conn.row_factory = sqlite3.Row
        found = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    conn.close()
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def crawled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Crawled]:
    """A project whose news spider crawled 4 pages (one 404) on two hosts, then a run of it
    was killed; on SQLite into data/news.db, on PostgreSQL into a database of its own."""
    root = make_project(tmp_path_factory.mktemp("project"), {"news.py": SPIDER})
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        project = Crawled(root, postgres.database())
    else:
        project = Crawled(root, "data/news.db")
    site = Site()
    logging_state = restore_logging()
    next(logging_state)
    try:
        b = site.add_host("127.0.0.3", {"/x": '<title>X, "quoted"\nline</title>'})
        a = site.add_host(
            "127.0.0.2",
            {"/": f'<title>Home</title><a href="/a">a</a><a href="/gone">g</a>'
                  f'<a href="http://{b}/x">x</a>',
             "/a": "<title>A</title>"},
        )  # fmt: skip
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)
            if project.postgres:
                mp.setenv("CRAWLER_DB", project.db)
            result = invoke(
                "run", "news", "-a", f"start_urls=http://{a}/",
                "-a", "allowed_domains=127.0.0.2,127.0.0.3",
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            # A run that was killed: its row never got finished_at (and its pid is gone).
            dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            execute(
                project.db,
                "INSERT INTO runs (spider, started_at, pid, hostname) VALUES"
                " ('news', 1.0, ?, (SELECT hostname FROM runs LIMIT 1))",
                int(dead.stdout),
            )
        yield project
    finally:
        site.stop()
        next(logging_state, None)


@pytest.fixture
def project(crawled: Crawled, monkeypatch: pytest.MonkeyPatch) -> Crawled:
    """The crawled project as the working directory; CRAWLER_DB names its PostgreSQL."""
    monkeypatch.chdir(crawled.root)
    if crawled.postgres:
        monkeypatch.setenv("CRAWLER_DB", crawled.db)
    return crawled


def on_sqlite(test: Any) -> Any:
    """Run ``test`` on the SQLite project only (it is about files under data/)."""
    return pytest.mark.parametrize("crawled", ["sqlite"], indirect=True)(test)


@pytest.mark.timeout(60)
def test_runs_lists_newest_first(project: Crawled) -> None:
    result = invoke("runs", "news")
    assert result.exit_code == 0, result.output
    header, killed, done = result.stdout.splitlines()
    assert header.split() == [
        "id", "spider", "started", "finished", "duration", "exit", "reason", "pages", "items",
        "errors",
    ]  # fmt: skip
    assert killed.split()[:2] == ["2", "news"] and "(killed)" in killed
    cells = done.split()
    assert cells[:2] == ["1", "news"]
    assert cells[-5:] == ["0", "finished", "4", "3", "0"]
    assert invoke("runs", "--db", project.db).stdout == result.stdout
    assert invoke("runs", "other", "--db", project.db).stderr == "no runs of other\n"


@pytest.mark.timeout(60)
def test_stats_latest_and_by_id(project: Crawled) -> None:
    latest = invoke("stats", "news")
    assert latest.exit_code == 0
    assert latest.stdout.startswith("run 2 of news: killed, no stats")
    result = invoke("stats", "news", "--run", "1")
    assert result.exit_code == 0, result.output
    lines = dict(
        line.split(None, 1)
        for line in result.stdout.splitlines()[1:]
        if not line.startswith("by status")
    )
    assert result.stdout.splitlines()[0] == "run 1 of news: finished (exit 0)"
    assert lines["pages"].startswith("4 (") and lines["pages"].endswith("/s)")
    assert "by status   200 3, 404 1" in result.stdout
    assert lines["items"] == "3" and lines["errors"] == "0"
    assert lines["bytes"].endswith(" B")
    hosts = lines["per"].removeprefix("host").split(", ")
    assert sorted(h.split()[-1] for h in hosts) == ["1", "3"]
    assert invoke("stats", "news", "--run", "9").exit_code == 1


@on_sqlite
def test_history_errors(project: Crawled) -> None:
    assert invoke("stats", "--run", "1").exit_code == 2  # run ids are per database
    result = invoke("runs", "nope")
    assert result.exit_code == 1 and result.stderr == "Error: no database at data/nope.db\n"
    assert invoke("export", "nope").exit_code == 1
    (project.root / "empty.db").write_bytes(b"")
    result = invoke("stats", "--db", "empty.db")
    assert result.exit_code == 1 and "has no runs table" in result.stderr
    assert not (project.root / "data" / "nope.db").exists()  # reading never creates a database


def test_history_errors_on_postgresql(postgres: PostgresServer) -> None:
    empty = postgres.database()
    missing = empty.rpartition("/")[0] + "/nope"
    for args in (["runs"], ["stats"], ["export"], ["export", "--table", "pages"]):
        result = invoke(*args, "--db", missing)
        assert result.exit_code == 1, (args, result.output)
        (line,) = result.stderr.splitlines()  # one line, no traceback
        assert line.startswith(f"Error: cannot open {missing}: ") and "does not exist" in line
    with psycopg.connect(postgres.admin_url) as pg:  # reading never creates a database
        assert pg.execute("SELECT 1 FROM pg_database WHERE datname = 'nope'").fetchall() == []
    result = invoke("stats", "--db", empty)
    assert result.exit_code == 1 and "has no runs table" in result.stderr
    result = invoke("export", "--db", empty)
    assert result.exit_code == 1 and "no table 'items'" in result.stderr


# --- runs and stats across every spider of a project ----------------------------------------


@pytest.mark.timeout(90)
def test_runs_and_stats_without_a_name_cover_every_spider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: Site
) -> None:
    """Cron runs several spiders; `crawler runs` lists them all, `crawler stats` the latest."""
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "news.py").write_text(SPIDER)
    (tmp_path / "spiders" / "blog.py").write_text(
        SPIDER.replace("class News", "class Blog").replace('"news"', '"blog"')
    )
    monkeypatch.chdir(tmp_path)
    assert invoke("runs").stderr == "no runs in data/\n"
    assert invoke("stats").exit_code == 1
    a = site.add_host("127.0.0.2", {"/": '<title>Home</title><a href="/a">a</a>', "/a": "A"})
    start = ("-a", f"start_urls=http://{a}/", "-a", "allowed_domains=127.0.0.2")
    for name in ("news", "blog", "news"):
        result = invoke("run", name, *start)
        assert result.exit_code == 0, result.output
    sqlite3.connect(tmp_path / "data" / "notes.db").execute("CREATE TABLE t (x)").connection.close()

    result = invoke("runs")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:2] == ["id", "spider"]
    assert [line.split()[:2] for line in lines] == [["2", "news"], ["1", "blog"], ["1", "news"]]
    assert all(line.split()[-5:-3] == ["0", "finished"] for line in lines)

    latest = invoke("stats")
    assert latest.exit_code == 0, latest.output
    assert latest.stdout.startswith("run 2 of news: finished (exit 0)")
    # With a NAME nothing changed.
    assert invoke("stats", "blog").stdout.startswith("run 1 of blog: finished")
    assert len(invoke("runs", "blog").stdout.splitlines()) == 2


# --- export -----------------------------------------------------------------------------------


def test_export_jsonl_to_stdout_round_trips(project: Crawled) -> None:
    result = invoke("export", "news")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == stored(project, "items") and len(rows) == 3
    assert any('"quoted"\nline' in (r["title"] or "") for r in rows)
    assert json.loads(rows[0]["tags"]) == ["a", "b"]  # JSON stays JSON text


def test_export_csv_file_is_atomic_and_round_trips(project: Crawled) -> None:
    out = project.root / "exports" / "news.csv"
    out.parent.mkdir(exist_ok=True)
    out.write_text("the previous export\n")
    result = invoke("export", "news", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"3 rows of items written to {out}\n"
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    jsonl = [json.loads(x) for x in invoke("export", "news").stdout.splitlines()]
    assert [r["title"] for r in rows] == [r["title"] for r in jsonl]
    assert [int(r["n"]) for r in rows] == [r["n"] for r in jsonl]
    assert sorted(p.name for p in out.parent.iterdir()) == ["news.csv"]  # no temp file left
    # A failing export leaves the previous file as it was.
    result = invoke("export", "news", "--table", "nope", "-o", str(out))
    assert result.exit_code == 1 and "no table 'nope'" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) >= 4


def test_export_other_tables_and_errors(project: Crawled) -> None:
    pages = invoke("export", "--db", project.db, "--table", "pages", "--blobs", "skip")
    assert pages.exit_code == 0
    first = json.loads(pages.stdout.splitlines()[0])
    assert "body" not in first and first["status"] == 200
    runs = [json.loads(x) for x in invoke("export", "news", "--table", "runs").stdout.split("\n")
            if x]  # fmt: skip
    assert json.loads(runs[0]["stats"])["pages"] == 4
    assert invoke("export", "news", "--format", "xml").exit_code == 2
    result = invoke("export", "news", "-o", "no/such/folder/x.jsonl")
    assert result.exit_code == 1 and "no folder" in result.stderr


@pytest.mark.timeout(60)
def test_export_into_a_closed_pipe_is_quiet(project: Crawled) -> None:
    env = subprocess_env()
    proc = subprocess.run(
        f"{sys.executable} -m crawler export --db '{project.db}' --table pages | head -c 10",
        shell=True, cwd=project.root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.stdout == '{"url": "h' and "Traceback" not in proc.stderr


def test_public_names() -> None:
    import crawler.engine.runlock
    import crawler.errors
    import crawler.store.history

    assert set(crawler.store.history.__all__) == {
        "format_run", "format_runs", "read_every_run", "read_runs", "run_state",
    }  # fmt: skip
    assert {"RunLock"} <= set(crawler.engine.runlock.__all__)
    # Their errors live in the one tree.
    assert {"HistoryError", "LockFileError", "LockedError"} <= set(crawler.errors.__all__)
    for module in (crawler.store.history, crawler.engine.runlock, crawler.errors):
        for name in module.__all__:
            assert hasattr(module, name)


# --- the same commands on PostgreSQL ----------------------------------------------------------


@pytest.mark.timeout(90)
def test_runs_stats_export_on_postgresql(
    tmp_path: Path, site: Site, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(make_project(tmp_path, {"news.py": SPIDER}))
    url = postgres.database()
    secret = url.replace("crawler@", "crawler:hunter2@")  # trust auth: any password works
    a = site.add_host("127.0.0.2", {"/": '<title>Home</title><a href="/a">a</a>',
                                    "/a": "<title>A</title>"})  # fmt: skip
    result = invoke("run", "news", "-a", f"start_urls=http://{a}/", "--db", secret)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert not (tmp_path / "data").exists()  # nothing on disk: the crawl is in the server
    monkeypatch.setenv("CRAWLER_DB", url)
    listed = invoke("runs")
    assert listed.exit_code == 0, listed.output
    assert "news" in listed.stdout and len(listed.stdout.splitlines()) == 2  # header + 1 run
    shown = invoke("stats", "news")
    assert shown.exit_code == 0 and "exit 0" in shown.stdout.replace("exit code 0", "exit 0")
    exported = invoke("export", "news")
    assert exported.exit_code == 0, exported.output
    items = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(i["title"] for i in items) == ["A", "Home"]
    assert json.loads(items[0]["tags"]) == ["a", "b"] and isinstance(items[0]["n"], int)
    pages = invoke("export", "--table", "pages", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(pages.stdout)))
    assert len(rows) == 2 and all(base64.b64decode(r["body"]) for r in rows)
    missing = invoke("export", "--table", "nope")
    assert missing.exit_code == 1 and "no table 'nope'" in missing.stderr
