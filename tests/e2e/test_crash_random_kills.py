"""Crash safety, repeated: kill the whole process tree at random moments, restart, finish.

A small site (3 hosts, 80 pages each, one item per page, slow pages so each run is cut in the
middle) is crawled by a ``python -c`` script calling ``crawl()`` in its own session. Each time
the run's ``runs`` row appears the test waits a random 0.2-1.5 s (seeded, so reproducible) and
signals the process group; then a last run finishes the crawl. At the end every page is stored
exactly once, no item is duplicated, nothing is left in flight and ``runs`` tells the story.

The SIGKILL case runs on both backends (``crawl_db``): it is the one that leaves a PostgreSQL
server with connections cut mid-transaction. The SIGTERM case, a graceful stop through the same
store calls as any other end of a run, runs on SQLite only, to keep the suite's time down.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kit.crawl import assert_crawled_once, rows_so_far, spawn_crawl
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PER_HOST = 80
SPIDER = """
from crawler.spider import Spider

class SiteSpider(Spider):
    name = "site"
    allowed_domains = []

    def parse(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()
"""
SETTINGS = {
    "workers": 2, "per_host": 2, "timeout": 5, "retries": 1, "robots": False, "sitemaps": False,
}  # fmt: skip


def build_site(site: Site, delay: float) -> list[str]:
    """Page i of each host links to the next three on its host and to page i of the next host."""
    names: list[str] = []
    routes: list[dict[str, Any]] = []
    for address in HOSTS:
        routes.append({})
        names.append(site.add_host(address, routes[-1]))
    for h, table in enumerate(routes):
        other = names[(h + 1) % len(names)]

        def serve(path: str, h: int = h, other: str = other) -> tuple[int, dict[str, str], str]:
            time.sleep(delay)
            i = int(path.removeprefix("/p"))
            links = [f"/p{j}" for j in range(i + 1, min(PER_HOST, i + 4))]
            links.append(f"http://{other}/p{i}")
            anchors = "".join(f'<a href="{href}">x</a>' for href in links)
            return 200, {}, f"<html><title>{h}-{i}</title><body>{anchors}</body></html>"

        for i in range(PER_HOST):
            table[f"/p{i}"] = serve
    return [f"http://{name}/p0" for name in names]


def start(tmp_path: Path, db: Path | str, urls: list[str]) -> subprocess.Popen[bytes]:
    return spawn_crawl(tmp_path, ("SiteSpider", SPIDER), db, " ".join(urls), SETTINGS)


def wait_for_run_row(proc: subprocess.Popen[bytes], db: Path | str, runs: int) -> None:
    deadline = time.monotonic() + 15
    while len(rows_so_far(db, "SELECT id FROM runs")) < runs:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.01)


def interrupt_repeatedly(
    tmp_path: Path, db: Path | str, urls: list[str], signum: int, times: int, seed: int
) -> list[int | None]:
    """Start, wait for the run row, wait 0.2-1.5 s, signal the group; ``times`` times."""
    rng = random.Random(seed)
    codes: list[int | None] = []
    for k in range(1, times + 1):
        proc = start(tmp_path, db, urls)
        try:
            wait_for_run_row(proc, db, k)
            time.sleep(rng.uniform(0.2, 1.5))
            if proc.poll() is None:
                os.killpg(proc.pid, signum)
            proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:  # never leave our process group behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        codes.append(proc.returncode)
    return codes


def finish(tmp_path: Path, db: Path | str, urls: list[str]) -> None:
    proc = start(tmp_path, db, urls)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")


def assert_complete(db: Path | str) -> None:
    """Every page of every host stored once, without an error, and the last run finished."""
    assert_crawled_once(db, len(HOSTS) * PER_HOST)
    assert rows_so_far(db, "SELECT count(*) FROM pages WHERE status <> 200") == [(0,)]
    assert rows_so_far(db, "SELECT count(*) FROM errors") == [(0,)]
    (last,) = rows_so_far(db, "SELECT exit_code, finish_reason FROM runs ORDER BY id DESC LIMIT 1")
    assert last == (0, "finished")


@pytest.mark.timeout(120)
def test_sigkill_20_times_then_finish(
    site: Site, tmp_path: Path, crawl_db: Callable[[str], Path | str]
) -> None:
    urls = build_site(site, delay=0.4)
    db = crawl_db("kill")
    codes = interrupt_repeatedly(tmp_path, db, urls, signal.SIGKILL, 20, seed=5)
    killed = sum(1 for c in codes if c == -signal.SIGKILL)
    assert killed >= 18, codes  # a run may finish on its own only near the very end
    pages_before = rows_so_far(db, "SELECT count(*) FROM pages")[0][0]
    assert pages_before > 0
    finish(tmp_path, db, urls)
    assert_complete(db)
    runs = rows_so_far(db, "SELECT exit_code, finish_reason, finished_at FROM runs ORDER BY id")
    assert len(runs) == 21
    for code, (exit_code, reason, finished_at), row in zip(codes, runs, range(20), strict=False):
        if code == -signal.SIGKILL:
            # Killed: never finished; the next run marked it abandoned (or left it unfinished).
            assert finished_at is None and exit_code is None, (row, reason)
            assert reason in (None, "abandoned"), (row, reason)
        else:
            assert (exit_code, reason) == (0, "finished"), (row, code)
    # A kill loses at most what was in flight (fetched again later); a page is stored once.
    extra = sum(n - 1 for (_host, path), n in site.hits.items() if path != "/p0")
    assert extra <= 20 * 2 * len(HOSTS), site.hits.most_common(5)


@pytest.mark.timeout(120)
def test_sigterm_8_times_then_finish(site: Site, tmp_path: Path) -> None:
    urls = build_site(site, delay=0.4)
    db = tmp_path / "term.db"
    codes = interrupt_repeatedly(tmp_path, db, urls, signal.SIGTERM, 8, seed=7)
    assert codes == [143] * 8, codes
    # Graceful: every interrupted run recorded its exit code and left nothing in flight.
    runs = rows_so_far(db, "SELECT exit_code, finish_reason, finished_at IS NOT NULL FROM runs")
    assert runs == [(143, "interrupted (SIGTERM)", 1)] * 8
    assert rows_so_far(db, "SELECT count(*) FROM frontier WHERE state = 'in_flight'") == [(0,)]
    finish(tmp_path, db, urls)
    assert_complete(db)
    assert len(rows_so_far(db, "SELECT id FROM runs")) == 9
    # The start pages are fetched again by every run (docs/cron.md). Other pages are not: the
    # workers ignore the group's SIGTERM and finish what they are fetching (0.4 s a page)
    # within the grace, so it is recorded instead of requeued and fetched again.
    extra = sum(n - 1 for (_host, path), n in site.hits.items() if path != "/p0")
    assert extra == 0, site.hits.most_common(5)
