"""Crash safety: kill -9, SIGINT/SIGTERM and a dying worker, then resume from the database
(on both backends: ``crawl_db``; what only concerns the processes runs on SQLite alone)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from tests.kit.crawl import TitleSpider, assert_crawled_once, rows, rows_so_far, spawn_crawl
from tests.kit.processes import child_pids
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

N = 120  # pages p0..p(N-1); with the home page "/" a full crawl stores N + 1
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
    """N pages on one host; page i links to the next three and back home, each served slowly."""

    def serve(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(delay)
        i = int(path.strip("/p") or 0) if path.startswith("/p") else 0
        links = "".join(f'<a href="/p{j}">{j}</a>' for j in range(i + 1, min(N, i + 4)))
        return 200, {}, f"<html><title>p{i}</title><body>{links}<a href='/'>home</a></body>"

    host = site.add_host("127.0.0.2", {"/": serve, "*": serve})
    return f"http://{host}/p0"


def count(db: Path | str, sql: str) -> Any:
    """The one value ``sql`` selects; 0 until the crawl has created its database."""
    found = rows_so_far(db, sql)
    return found[0][0] if found else 0


def start(tmp_path: Path, db: Path | str, url: str) -> subprocess.Popen[bytes]:
    return spawn_crawl(tmp_path, ("ChainSpider", SPIDER), db, url, SETTINGS)


def wait_for_pages(
    proc: subprocess.Popen[bytes], db: Path | str, pages: int, limit: float = 20
) -> None:
    deadline = time.monotonic() + limit
    while count(db, "SELECT count(*) FROM pages") < pages:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the crawl made no progress"
        time.sleep(0.02)


def finish(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode is not None
    if proc.returncode not in (0, 4, 130, 143):
        pytest.fail(err.decode(errors="replace"))
    return proc.returncode


@pytest.mark.timeout(90)
def test_kill_9_mid_crawl_then_resume(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str]
) -> None:
    url = chain_site(site, delay=0.01)
    db = crawl_db("crash")
    for k in range(1, 4):
        proc = start(tmp_path, db, url)
        wait_for_pages(proc, db, 20 * k)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    proc = start(tmp_path, db, url)
    assert finish(proc) == 0
    assert_crawled_once(db, N + 1)
    # Three killed runs never finished; the last one tells how it ended.
    assert count(db, "SELECT count(*) FROM runs WHERE finished_at IS NULL") == 3
    assert count(db, "SELECT exit_code FROM runs ORDER BY id DESC LIMIT 1") == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_gracefully_then_resume(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str], signum: int, code: int
) -> None:
    url = chain_site(site, delay=0.01)
    db = crawl_db("sig")
    proc = start(tmp_path, db, url)
    wait_for_pages(proc, db, 20)
    os.killpg(proc.pid, signum)  # like Ctrl-C in a terminal: the whole group gets it
    assert finish(proc) == code
    assert count(db, "SELECT count(*) FROM frontier WHERE state = 'in_flight'") == 0
    assert count(db, "SELECT exit_code FROM runs") == code
    assert count(db, "SELECT count(*) FROM pages") < N + 1
    assert finish(start(tmp_path, db, url)) == 0
    assert_crawled_once(db, N + 1)


@pytest.mark.timeout(60)
def test_second_signal_stops_quickly(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str]
) -> None:
    url = chain_site(site, delay=1.5)  # in-flight requests that would outlast the grace
    db = crawl_db("hard")
    proc = start(tmp_path, db, url)
    wait_for_pages(proc, db, 2)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.2)
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc, timeout=10) == 143
    assert time.monotonic() - began < 4
    assert count(db, "SELECT count(*) FROM frontier WHERE state = 'in_flight'") == 0


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def in_flight_urls(db: Path | str) -> set[str]:
    return {url for (url,) in rows_so_far(db, "SELECT url FROM frontier WHERE state = 'in_flight'")}


@pytest.mark.timeout(60)
def test_group_sigterm_lets_in_flight_work_finish(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str]
) -> None:
    # systemd or a cron wrapper signals the whole process group. The workers ignore SIGTERM
    # like SIGINT, so what they are fetching (1 s a page, inside the 5 s grace) is recorded
    # as done instead of being requeued and fetched again by the next run.
    url = chain_site(site, delay=1.0)
    db = crawl_db("term")
    proc = start(tmp_path, db, url)
    wait_for_pages(proc, db, 3)
    deadline = time.monotonic() + 10
    while not (fetching := in_flight_urls(db)):
        assert time.monotonic() < deadline, "nothing in flight"
        time.sleep(0.02)
    workers = child_pids(proc.pid)  # its workers
    assert len(workers) == 2
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert finish(proc) == 143
    assert time.monotonic() - signalled < 4  # the in-flight pages, not the whole grace
    assert not any(alive(pid) for pid in workers)
    assert count(db, "SELECT exit_code FROM runs") == 143
    assert count(db, "SELECT count(*) FROM frontier WHERE state = 'in_flight'") == 0
    states = dict(rows(db, "SELECT url, state FROM frontier"))
    stored = {u for (u,) in rows(db, "SELECT url FROM pages")}
    assert {states[u] for u in fetching} == {"done"}, fetching
    assert fetching <= stored
    assert max(site.hits.values()) == 1  # nothing was fetched and then thrown away
    assert count(db, "SELECT count(*) FROM pages") == sum(site.hits.values())


@pytest.mark.timeout(60)
def test_group_sigterm_kills_a_worker_still_busy_after_the_grace(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str]
) -> None:
    # A page that takes 30 s cannot finish within the grace: its worker ignores SIGTERM, so the
    # parent's last resort is SIGKILL, and the URL goes back to the queue (not as a death).
    def hang(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(30)
        return 200, {}, "<html><title>late</title></html>"

    home = "<html><title>home</title><body><a href='/hang'>h</a></body></html>"
    host = site.add_host("127.0.0.2", {"/": home, "/hang": hang})
    db = crawl_db("hang")
    proc = start(tmp_path, db, f"http://{host}/")
    deadline = time.monotonic() + 15
    while site.hits[(host, "/hang")] == 0:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    workers = child_pids(proc.pid)  # its workers
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert finish(proc, timeout=20) == 143
    assert time.monotonic() - signalled < 9  # 5 s grace, 1 s for the worker, then SIGKILL
    assert not any(alive(pid) for pid in workers)
    [(state,)] = rows(db, "SELECT state FROM frontier WHERE url = ?", f"http://{host}/hang")
    stats = json.loads(rows(db, "SELECT stats FROM runs")[0][0])
    assert state == "queued"
    assert stats["dead_workers"] == 0


@pytest.mark.timeout(60)
def test_parent_killed_alone_takes_its_workers_along(site: Site, tmp_path: Path) -> None:
    # About processes only (the database is just where progress shows): SQLite alone.
    # Workers ignore SIGTERM, so they must not outlive a parent that was SIGKILLed (the OOM
    # killer, a kill -9 of the parent's PID): they go with it, in-flight fetches and all.
    url = chain_site(site, delay=0.5)
    db = tmp_path / "orphan.db"
    proc = start(tmp_path, db, url)
    try:
        wait_for_pages(proc, db, 2)
        workers = child_pids(proc.pid)  # its workers
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        os.kill(proc.pid, signal.SIGKILL)  # the parent only
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 3
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their parent"
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # never leave our process group behind
        if proc.poll() is None:
            proc.communicate()


@pytest.mark.timeout(60)
def test_dead_worker_is_replaced_and_its_urls_requeued(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    url = chain_site(site, delay=0.01)
    db = crawl_db("dead")
    killed: list[int] = []

    def progress(snapshot: dict[str, Any]) -> None:
        if not killed and snapshot["pages"] >= 15:
            victim = multiprocess.active_children()[0]
            killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)

    result = crawl(
        TitleSpider,
        settings=Settings(workers=2, timeout=5, retries=1, robots=False),
        db_path=db,
        spider_kwargs={"start_urls": url},
        on_progress=progress,
    )
    assert killed
    assert result.exit_code == 0, result
    assert result.stats["dead_workers"] == 1
    assert_crawled_once(db, N + 1)
