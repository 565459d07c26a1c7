"""Every exit code of ``crawler run``, through the CLI, on loopback sites.

Codes already proven elsewhere (and not repeated here):
2 usage/configuration errors -- tests/cli/test_commands.py::test_run_usage_errors_exit_2 and
test_bad_custom_settings_are_a_configuration_error; 3 spider import errors --
test_run_unknown_spider_exits_3_with_one_line and test_run_broken_file_exits_3; 4 by
``--max-pages`` -- test_run_file_with_db_option_log_file_and_page_limit; 130/143 from the
engine -- tests/e2e/test_crash_resume.py::test_signal_stops_gracefully_then_resume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from crawler.engine import crawl
from crawler.errors import StorageError
from crawler.loader import load_spider
from crawler.settings import Settings
from tests.kit.crawl import rows, rows_so_far
from tests.kit.postgres import PostgresServer
from tests.kit.project import invoke, make_project, subprocess_env
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

SPIDER = """
import time
from crawler import Spider

class Chain(Spider):
    name = "chain"
    custom_settings = {"robots": False, "workers": 1, "timeout": 5, "retries": 0}
    fail = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.fail == "init":
            raise ValueError("no start_url given\\nsecond line")

    def start_requests(self):
        if self.fail == "start":
            raise RuntimeError("cannot build the start list")
        yield from super().start_requests()

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project folder as the working directory, with the chain spider."""
    monkeypatch.chdir(make_project(tmp_path, {"chain.py": SPIDER}))
    return tmp_path


def chain(site: Site, n: int, delay: float = 0.0, extra: str = "") -> str:
    """``n`` pages, each linking to the next (and page 0 to ``extra``), served after ``delay``."""

    def serve(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(delay)
        i = int(path.strip("/p") or 0)
        link = f'<a href="/p{i + 1}">next</a>' if i + 1 < n else ""
        if i == 0 and extra:
            link += f'<a href="{extra}">x</a>'
        return 200, {}, f"<html><title>p{i}</title><body>{link}</body></html>"

    host = site.add_host("127.0.0.2", {"*": serve})
    return f"http://{host}/p0"


def run_chain(*args: str) -> Result:
    """``crawler run chain ARGS...`` in this process."""
    return invoke("run", "chain", *args)


def runs(db: Path | str) -> list[tuple[int, str]]:
    return rows(db, "SELECT exit_code, finish_reason FROM runs ORDER BY id")


def pages_stored(db: Path) -> int:
    """Pages in ``db`` so far (0 before a run, maybe in another process, creates it)."""
    found = rows_so_far(db, "SELECT count(*) FROM pages")
    return int(found[0][0]) if found else 0


def summary(result: Result) -> str:
    return result.stderr.strip().splitlines()[-1]


# --- 0 and 1 ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_0_finished_and_1_below_min_items(
    project: Path,
    site: Site,
    crawl_db: Callable[[str], Path | str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = crawl_db("chain")
    monkeypatch.setenv("CRAWLER_DB", str(db))  # --db's environment variable, on both backends
    start = chain(site, 3)
    result = run_chain("-a", f"start_urls={start}", "-s", "min_items=3")
    assert result.exit_code == 0, result.output
    assert summary(result).startswith("chain: finished (exit 0): 3 pages, 3 items, 0 errors")
    # Nothing new to fetch: the second run scrapes no items, below min_items.
    result = run_chain("-a", f"start_urls={start}", "-s", "min_items=3")
    assert result.exit_code == 1, result.output
    assert "below min_items (0 < 3) (exit 1)" in summary(result)
    assert runs(db)[-1][0] == 1
    assert not (project / "data" / "chain.db").exists()


@pytest.mark.timeout(60)
def test_1_above_max_error_rate(
    project: Path, site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    start = chain(site, 3, extra="http://127.0.0.3:9/refused")  # nothing listens there
    args = ("-a", f"start_urls={start}", "-a", "allowed_domains=127.0.0.2,127.0.0.3")
    result = run_chain(*args, "-s", "max_error_rate=0.5", "--db", str(crawl_db("a")))
    assert result.exit_code == 0, result.output  # 1 of 4 URLs failed: 25%
    result = run_chain(*args, "-s", "max_error_rate=0.2", "--db", str(crawl_db("b")))
    assert result.exit_code == 1, result.output
    assert "above max_error_rate (1/4 URLs failed, 25% > 20%) (exit 1)" in summary(result)
    assert "1 errors" in summary(result)


# --- 3: could not start -----------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ("init", "chain: __init__ raised ValueError: no start_url given"),
        ("start", "chain: start_requests raised RuntimeError: cannot build the start list"),
    ],
)
def test_3_spider_raises_at_start(
    project: Path, site: Site, crawl_db: Callable[[str], Path | str], fail: str, message: str
) -> None:
    start = chain(site, 3)
    db = crawl_db("chain")
    result = run_chain("-a", f"start_urls={start}", "-a", f"fail={fail}", "--db", str(db))
    assert result.exit_code == 3
    # One line, no traceback (after the INFO records a PostgreSQL run logs as a node joins it).
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if not line.startswith("INFO: ")] == [f"Error: {message}"]
    if fail == "init":
        # Nothing was touched: no file, no table.
        if isinstance(db, Path):
            assert not db.exists()
        else:
            tables = (
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            assert rows(db, tables) == []
    else:
        assert runs(db) == [(3, message)]


def test_3_database_cannot_be_opened(project: Path) -> None:
    (project / "file").write_text("x")
    result = run_chain("-a", "start_urls=http://127.0.0.2:9/", "--db", "file/sub/c.db")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: cannot create the lock file file/sub/c.db.lock")
    (project / "notes.db").write_bytes(b"not SQLite at all, just text " * 200)
    result = run_chain("-a", "start_urls=http://127.0.0.2:9/", "--db", "notes.db")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "Error: 'notes.db' is not a SQLite database (or is damaged)"
    ]
    result = run_chain("-a", "start_urls=http://127.0.0.2:9/", "--db", "spiders")
    assert result.exit_code == 2  # click: a folder where a file is expected


@pytest.mark.timeout(60)
def test_3_postgresql_cannot_be_reached_or_opened(
    project: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    missing = postgres.database().rpartition("/")[0] + "/nope"  # the server is up, not the db
    for url, why in [
        (f"postgresql://crawler:hunter2@127.0.0.1:{port}/crawl", "refused"),
        (missing.replace("crawler@", "crawler:hunter2@"), 'database "nope" does not exist'),
    ]:
        # As cron runs it: the URL in CRAWLER_DB, not on the command line.
        monkeypatch.setenv("CRAWLER_DB", url)
        began = time.monotonic()
        result = run_chain("-a", "start_urls=http://127.0.0.2:9/")
        assert result.exit_code == 3, result.output
        assert time.monotonic() - began < 10  # at start, no db_retry wait: nothing to resume
        (line,) = result.stderr.strip().splitlines()  # one line, no traceback
        shown = url.replace(":hunter2@", "@")
        assert line.startswith(f"Error: cannot open database {shown}: ") and why in line, line
    assert sorted(p.name for p in project.iterdir()) == ["spiders"]  # nothing on disk


@pytest.mark.timeout(60)
def test_database_locked_by_another_writer_wait_then_clear_error(project: Path, site: Site) -> None:
    start = chain(site, 2)
    db = project / "w.db"
    assert run_chain("-a", f"start_urls={start}", "--db", str(db)).exit_code == 0
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer, e.g. a script updating the file
    try:
        spider = load_spider("chain", path="spiders")
        settings = Settings(robots=False, workers=1)
        began = time.monotonic()
        with pytest.raises(StorageError, match=r"locked by another writer; waited 0\.5s"):
            crawl(spider, settings=settings, db_path=db, busy_timeout=0.5)
        assert time.monotonic() - began >= 0.5
        # A writer that lets go within busy_timeout is simply waited for.
        timer = threading.Timer(0.5, other.execute, ("ROLLBACK",))
        timer.start()
        result = crawl(spider, settings=settings, db_path=db, busy_timeout=10)
        timer.join()
        assert result.exit_code == 0
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


# --- 4: robots.txt unreachable, and the next run asks again --------------------------------------


@pytest.mark.timeout(60)
def test_4_robots_unreachable_then_the_fixed_server_is_asked_again(
    project: Path, site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    db = crawl_db("chain")
    state = {"robots": (503, {}, "down for maintenance")}
    pages = {"/": "<title>home</title><a href='/a'>a</a>", "/a": "<title>a</title>"}
    host = site.add_host("127.0.0.2", {"/robots.txt": lambda _p: state["robots"], **pages})
    args = ("-a", f"start_urls=http://{host}/", "-s", "robots=true", "--db", str(db))
    result = run_chain(*args)
    assert result.exit_code == 4, result.output
    assert "robots.txt unreachable" in summary(result)
    assert site.hits[(host, "/")] == 0

    # The operator fixes the server and runs again at once, well inside the 5-minute backoff.
    state["robots"] = (200, {"Content-Type": "text/plain"}, "User-agent: *\nDisallow:\n")
    result = run_chain(*args)
    assert result.exit_code == 0, result.output
    assert site.hits[(host, "/robots.txt")] == 2
    assert rows(db, "SELECT count(*) FROM pages") == [(2,)]
    assert runs(db) == [(4, "robots.txt unreachable"), (0, "finished")]


# --- 4: --max-runtime, then the next run resumes ------------------------------------------------


@pytest.mark.timeout(60)
def test_4_max_runtime_then_resume(
    project: Path, site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    db = crawl_db("chain")
    start = chain(site, 12, delay=0.25)  # about 3 s of pages one after another
    result = run_chain("-a", f"start_urls={start}", "--max-runtime", "1s", "--db", str(db))
    assert result.exit_code == 4, result.output
    assert "chain: max_runtime (exit 4)" in summary(result)
    first = rows(db, "SELECT count(*) FROM pages")[0][0]
    assert 0 < first < 12
    result = run_chain("-a", f"start_urls={start}", "--db", str(db))
    assert result.exit_code == 0, result.output
    # What the first run left (and the start URL again, when recrawl re-fetches it).
    fetched = int(summary(result).split(": ")[2].split()[0])
    assert fetched in (12 - first, 12 - first + 1), summary(result)
    assert rows(db, "SELECT count(*) FROM pages") == [(12,)]
    assert [code for code, _ in runs(db)] == [4, 0]


# --- 75, then 130: two real processes ---------------------------------------------------------


def _start(project: Path, *args: str) -> subprocess.Popen[str]:
    env = subprocess_env()
    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", "chain", *args],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


@pytest.mark.timeout(90)
def test_75_second_run_exits_at_once_then_130_on_sigint(project: Path, site: Site) -> None:
    start = chain(site, 200, delay=0.05)
    first = _start(project, "-a", f"start_urls={start}", "--fresh")
    try:
        db = project / "data" / "chain.db"
        deadline = time.monotonic() + 30
        while pages_stored(db) < 3:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        # --fresh too: it must not wipe the database the first run is using.
        second = _start(project, "-a", f"start_urls={start}", "--fresh")
        out, err = second.communicate(timeout=30)
        assert second.returncode == 75, err
        assert time.monotonic() - began < 10
        assert out == ""
        (line,) = err.strip().splitlines()  # exactly one line, naming the holder
        assert line.startswith(f"another run (pid {first.pid} since ")
        assert line.endswith("holds the lock data/chain.db.lock")
        before = pages_stored(db)
        time.sleep(0.5)
        assert first.poll() is None and pages_stored(db) > before  # the first run keeps going
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
        _, err = first.communicate(timeout=30)
        assert first.returncode == 130, err
        assert "interrupted (SIGINT) (exit 130)" in err.strip().splitlines()[-1]
        with sqlite3.connect(db) as conn:
            (code,) = conn.execute("SELECT exit_code FROM runs").fetchone()
            queued = conn.execute("SELECT count(*) FROM frontier WHERE state = 'queued'")
            assert code == 130 and queued.fetchone()[0] > 0  # state saved for the next run
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate()


@pytest.mark.timeout(60)
def test_lock_of_a_killed_run_is_taken_over_while_its_workers_linger(
    project: Path, site: Site
) -> None:
    start = chain(site, 200, delay=0.05)
    first = _start(project, "-a", f"start_urls={start}", "--workers", "2")
    try:
        db = project / "data" / "chain.db"
        deadline = time.monotonic() + 30
        while pages_stored(db) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)  # only the parent: its workers may live on a bit
        first.communicate(timeout=10)
        result = run_chain("-a", f"start_urls={start}", "--max-pages", "1")
        assert result.exit_code == 4, result.output  # took the lock, crawled, stopped
        codes = [code for code, _ in runs(db)]
        assert codes == [None, 4]  # the killed run never finished
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)  # the group we started, workers included
        if first.poll() is None:
            first.communicate()
