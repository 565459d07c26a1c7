"""Storage faults while a crawl runs: another writer holds the database for a while.

(A database locked before the run starts, a folder that cannot be created and a file that is
not a database are covered, with their exit code 3, in tests/cli/test_exit_codes.py.)
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from crawler.engine import crawl
from crawler.errors import StorageError
from crawler.settings import Settings
from tests.kit.crawl import TitleSpider, assert_crawled_once, rows
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

N = 60
SETTINGS = Settings(workers=2, per_host=2, timeout=5, retries=1, robots=False, sitemaps=False)


def two_hosts(site: Site) -> list[str]:
    def serve(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(0.02)
        i = int(path.removeprefix("/p"))
        links = "".join(f'<a href="/p{j}">x</a>' for j in range(i + 1, min(N, i + 3)))
        return 200, {}, f"<html><title>{path}</title><body>{links}</body></html>"

    hosts = [
        site.add_host(a, {f"/p{i}": serve for i in range(N)}) for a in ("127.0.0.2", "127.0.0.3")
    ]
    return [f"http://{h}/p0" for h in hosts]


class Writer:
    """Another process-like writer: a second connection that holds ``BEGIN IMMEDIATE``."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self._timer: threading.Timer | None = None
        self._closed = False
        self.held_at: float | None = None
        self.released_at: float | None = None

    def hold(self, seconds: float) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held_at = time.monotonic()
        self._timer = threading.Timer(seconds, self.release)
        self._timer.start()

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
            self.released_at = time.monotonic()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        if not self._closed:
            self._closed = True
            self.release()
            self.conn.close()


@pytest.fixture
def writer_for() -> Iterator[Any]:
    made: list[Writer] = []

    def make(db: Path) -> Writer:
        made.append(Writer(db))
        return made[-1]

    yield make
    for w in made:
        w.close()


@pytest.mark.timeout(60)
def test_writer_holding_the_lock_briefly_is_waited_for(
    site: Site, tmp_path: Path, writer_for: Any
) -> None:
    starts = two_hosts(site)
    db = tmp_path / "brief.db"
    writer: Writer | None = None

    def progress(snapshot: dict[str, Any]) -> None:
        nonlocal writer
        if writer is None and snapshot["pages"] >= 10:
            writer = writer_for(db)
            writer.hold(1.5)

    result = crawl(
        TitleSpider,
        settings=SETTINGS,
        db_path=db,
        spider_kwargs={"start_urls": " ".join(starts)},
        on_progress=progress,
    )
    assert writer is not None and writer.released_at is not None
    assert result.exit_code == 0, result
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    assert_crawled_once(db, 2 * N)


@pytest.mark.timeout(60)
def test_writer_holding_the_lock_too_long_is_a_clear_error_and_nothing_is_lost(
    site: Site, tmp_path: Path, writer_for: Any
) -> None:
    starts = two_hosts(site)
    db = tmp_path / "long.db"
    writer: Writer | None = None

    def progress(snapshot: dict[str, Any]) -> None:
        nonlocal writer
        if writer is None and snapshot["pages"] >= 10:
            writer = writer_for(db)
            writer.hold(3.0)

    kwargs = {"start_urls": " ".join(starts)}
    with pytest.raises(StorageError, match=r"is locked by another writer; waited 1s to \w+"):
        crawl(
            TitleSpider,
            settings=SETTINGS,
            db_path=db,
            spider_kwargs=kwargs,
            on_progress=progress,
            busy_timeout=1.0,
        )
    assert writer is not None
    assert multiprocess.active_children() == []  # the workers were stopped
    writer.close()
    stored = rows(db, "SELECT count(*) FROM pages")[0][0]
    assert 10 <= stored < 2 * N
    # The run never finished; what it had in flight is still marked so, and the next run
    # puts it back in the queue and finishes the crawl with every page stored once.
    assert rows(db, "SELECT finished_at FROM runs") == [(None,)]
    result = crawl(TitleSpider, settings=SETTINGS, db_path=db, spider_kwargs=kwargs)
    assert (result.exit_code, result.finish_reason) == (0, "finished")
    assert_crawled_once(db, 2 * N)
