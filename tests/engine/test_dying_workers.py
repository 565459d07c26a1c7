"""Workers that die: killed from outside by PID, and a poison URL that kills its worker each time.

(tests/e2e/test_crash_resume.py already kills one worker through ``multiprocess.active_children``;
here the PID comes from ``/proc`` and the replacement is checked, and a URL that keeps killing
workers must end as a failed entry instead of looping.) Both on both backends: ``crawl_db``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine.loop import WORKER_DEATH_ATTEMPTS, crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.crawl import assert_crawled_once, rows
from tests.kit.processes import child_pids
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

N = 40
SETTINGS = Settings(workers=2, per_host=2, timeout=5, retries=1, robots=False, sitemaps=False)


def slow_site(site: Site, extra: list[str] = ()) -> str:  # type: ignore[assignment]
    def serve(path: str) -> tuple[int, dict[str, str], str]:
        time.sleep(0.03)
        return 200, {}, f"<html><title>{path}</title><body>leaf</body></html>"

    routes: dict[str, Any] = {f"/p{i}": serve for i in range(N)}
    links = "".join(f'<a href="/p{i}">{i}</a>' for i in range(N)) + "".join(extra)
    routes["/"] = f"<html><title>home</title><body>{links}</body></html>"
    return site.add_host("127.0.0.2", routes)


class PoisonableSpider(Spider):
    """TitleSpider on every host, except that its worker dies when it parses ``/poison``."""

    name = "titles"
    allowed_domains: list[str] | None = []

    def parse(self, response: Response) -> Any:
        if response.url.endswith("/poison"):
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies in the callback
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()


@pytest.mark.timeout(60)
def test_worker_killed_by_pid_is_replaced_and_nothing_is_lost(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    host = slow_site(site)
    db = crawl_db("kill")
    me = os.getpid()
    seen: list[set[int]] = []
    others = child_pids(me)  # children of this process that are not the crawl's workers

    def progress(snapshot: dict[str, Any]) -> None:
        kids = child_pids(me) - others
        seen.append(kids)
        if len(seen) == 2 and snapshot["in_flight"]:
            os.kill(min(kids), signal.SIGKILL)

    result = crawl(
        PoisonableSpider,
        settings=SETTINGS,
        db_path=db,
        spider_kwargs={"start_urls": f"http://{host}/"},
        on_progress=progress,
    )
    assert len(seen) >= 3, "the crawl ended before a worker could be killed"
    assert result.exit_code == 0, result
    assert result.stats["dead_workers"] == 1
    # A replacement with a new PID took the dead worker's place.
    before, after = seen[1], seen[-1]
    assert len(after) == 2 and len(after - before) == 1
    assert_crawled_once(db, N + 1)
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]


@pytest.mark.timeout(60)
def test_poison_url_fails_after_its_attempts(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    poison = site.add_host("127.0.0.5", {"/poison": "<html><title>poison</title></html>"})
    host = slow_site(site, [f'<a href="http://{poison}/poison">x</a>'])
    db = crawl_db("poison")
    result = crawl(
        PoisonableSpider,
        settings=SETTINGS,
        db_path=db,
        spider_kwargs={"start_urls": f"http://{host}/"},
    )
    attempts = max(WORKER_DEATH_ATTEMPTS, SETTINGS.retries + 1)
    assert (result.exit_code, result.finish_reason) == (0, "finished"), result
    assert site.hits[(poison, "/poison")] == attempts
    assert result.stats["dead_workers"] == attempts
    assert result.stats["errors_by_kind"] == {"worker_died": 1}
    url = f"http://{poison}/poison"
    (error,) = rows(db, "SELECT kind, message FROM errors WHERE url = ?", url)
    assert error[0] == "worker_died" and "exit code -9" in error[1]
    assert rows(db, "SELECT state, attempts FROM frontier WHERE url = ?", url) == [
        ("failed", attempts)
    ]
    # Everything else was stored once.
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(N + 1, N + 1)]
    assert rows(db, "SELECT count(*) FROM frontier WHERE state NOT IN ('done', 'failed')") == [(0,)]
    assert rows(db, "SELECT count(*) FROM frontier WHERE state = 'failed'") == [(1,)]
