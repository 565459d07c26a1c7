"""A crawl on PostgreSQL, one node at a time: the cron contract on the server.

A run of *another* spider on the same database is refused with exit 75 (the frontier belongs
to the database), and a kill -9 of the holder frees it for the run that resumes the crawl.
SIGINT ends a run with 130 and its state saved; the next run finishes it. After a
``pg_ctl restart -m immediate`` mid-crawl the run reconnects (within ``db_retry``) and
finishes; with ``db_retry=0`` it exits 3 and a new run finishes: nothing acknowledged is
lost, nothing stored twice. Several nodes: tests/distributed/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crawler.engine import crawl
from crawler.errors import LockedError
from crawler.settings import Settings
from tests.kit.crawl import assert_crawled_once, rows, spawn_crawl
from tests.kit.postgres import PostgresServer
from tests.kit.processes import start_crawl
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

N = 60
SPIDER = """
from crawler.spider import Spider

class ChainSpider(Spider):
    name = "chain"

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()
"""
SETTINGS = {"workers": 2, "timeout": 5, "retries": 1, "robots": False, "per_host": 2}


def chain_site(site: Site, delay: float) -> str:
    """N pages on one host; page i links to the next three and back home, served slowly."""

    def serve(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(delay)
        i = int(path.strip("/p") or 0) if path.startswith("/p") else 0
        links = "".join(f'<a href="/p{j}">{j}</a>' for j in range(i + 1, min(N, i + 4)))
        return 200, {}, f"<html><title>p{i}</title><body>{links}<a href='/'>home</a></body>"

    host = site.add_host("127.0.0.2", {"/": serve, "*": serve})
    return f"http://{host}/p0"


def pages(db: str) -> int:
    try:
        return int(rows(db, "SELECT count(*) FROM pages")[0][0])
    except Exception:  # the schema is not there yet
        return 0


def wait_for_pages(proc: subprocess.Popen[bytes], db: str, n: int, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while pages(db) < n:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the crawl made no progress"
        time.sleep(0.05)


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return int(proc.returncode), err.decode(errors="replace")


@pytest.mark.timeout(120)
def test_second_run_is_refused_then_kill_9_frees_the_lock_and_a_new_run_resumes(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    start = chain_site(site, delay=0.05)
    first = spawn_crawl(tmp_path, ("ChainSpider", SPIDER), db, start, SETTINGS)
    try:
        wait_for_pages(first, db, 5)
        with pytest.raises(LockedError) as info:
            crawl(
                __import__("tests.kit.crawl", fromlist=["TitleSpider"]).TitleSpider,
                settings=Settings(**SETTINGS),
                db_path=db,
                spider_kwargs={"start_urls": start},
            )
        assert f"pid {first.pid}" in str(info.value)
        assert info.value.exit_code == 75
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
    stored = pages(db)
    assert 0 < stored < N + 1
    # The server saw the connection die: the lock is free, and the new run requeues what the
    # killed one left in flight.
    again = spawn_crawl(tmp_path, ("ChainSpider", SPIDER), db, start, SETTINGS)
    code, err = finish(again)
    assert code == 0, err
    assert_crawled_once(db, N + 1)
    assert rows(db, "SELECT count(*) FROM runs WHERE exit_code = 0") == [(1,)]


def run_cli(folder: Path, db: str, start: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -m crawler run chain.py --db URL`` in its own session, as cron would."""
    spider = folder / "chain.py"
    spider.write_text(SPIDER + f"    custom_settings = {SETTINGS!r}\n")
    return start_crawl(spider, db, start, *args)


@pytest.mark.timeout(120)
def test_pg_ctl_restart_immediate_mid_crawl_the_run_reconnects_and_finishes(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    start = chain_site(site, delay=0.05)
    proc = run_cli(tmp_path, db, start, "-s", "db_retry=60")
    try:
        wait_for_pages(proc, db, 5)
        postgres.restart()
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 0, err
    assert "reconnecting" in err  # the warning says what happened (no password in it)
    assert_crawled_once(db, N + 1)
    assert rows(db, "SELECT count(*), min(exit_code) FROM runs") == [(1, 0)]


@pytest.mark.timeout(120)
def test_pg_ctl_restart_immediate_with_db_retry_0_exits_3_and_a_new_run_finishes(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    start = chain_site(site, delay=0.05)
    proc = run_cli(tmp_path, db, start, "-s", "db_retry=0")
    try:
        wait_for_pages(proc, db, 5)
        postgres.restart()
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 3, err
    assert "postgresql://crawler@" in err and "cannot" in err  # says what failed, and where
    again = run_cli(tmp_path, db, start)
    code, err = finish(again)
    assert code == 0, err
    assert_crawled_once(db, N + 1)


@pytest.mark.timeout(120)
def test_sigint_mid_crawl_exits_130_with_its_state_saved_and_the_next_run_finishes(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    start = chain_site(site, delay=0.05)
    proc = run_cli(tmp_path, db, start)
    try:
        wait_for_pages(proc, db, 5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 130, err
    assert "interrupted (SIGINT) (exit 130)" in err.strip().splitlines()[-1]
    assert rows(db, "SELECT exit_code FROM runs") == [(130,)]
    assert rows(db, "SELECT state, exit_code FROM nodes") == [("done", 130)]
    states = dict(rows(db, "SELECT state, count(*) FROM frontier GROUP BY state"))
    assert "in_flight" not in states and states["queued"] > 0  # saved for the next run
    again = run_cli(tmp_path, db, start)
    code, err = finish(again)
    assert code == 0, err
    assert_crawled_once(db, N + 1)
    assert rows(db, "SELECT exit_code FROM runs ORDER BY id") == [(130,), (0,)]
