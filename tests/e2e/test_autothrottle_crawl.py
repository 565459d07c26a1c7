"""Autothrottle end to end: a host that slows down past 3 requests at once and refuses past 5
is held at 3-4 in flight with no 503, while a fast host beside it climbs towards per_host 8;
what was learned is stored in ``host_state`` and the next run starts from it (on both backends:
``crawl_db``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.crawl import rows
from tests.kit.loadserver import LoadServer

pytestmark = [pytest.mark.slow]

SLOW, FAST = "127.0.0.2", "127.0.0.3"


class LinkSpider(Spider):
    name = "links"
    allowed_domains = [SLOW, FAST]

    def parse(self, response: Response) -> Any:
        yield from response.links()


def _site(server: LoadServer, pages: int, prefix: str = "p") -> None:
    """Per host an index page linking to ``pages`` leaves on that host (new paths per prefix)."""
    paths = [f"/{prefix}{i}" for i in range(pages)]
    server.pages = {p: b"<html><body>leaf</body></html>" for p in paths}
    for a in (SLOW, FAST):
        anchors = "".join(f'<a href="{server.url(p, a)}">x</a>' for p in paths)
        server.pages[f"/index-{prefix}-{a}"] = f"<html><body>{anchors}</body></html>".encode()


def _run(server: LoadServer, db: Path | str, prefix: str = "p") -> Any:
    starts = " ".join(server.url(f"/index-{prefix}-{a}", a) for a in (SLOW, FAST))
    return crawl(
        LinkSpider,
        settings=Settings(workers=2, per_host=8, timeout=10, robots=False, retries=0),
        db_path=db,
        spider_kwargs={"start_urls": starts},
    )


@pytest.mark.timeout(120)
def test_a_host_that_slows_past_three_at_once_is_held_at_three_or_four(
    crawl_db: Callable[[str], Path | str],
) -> None:
    db = crawl_db("throttle")
    with LoadServer((SLOW, FAST), slow_hosts=(SLOW,), base_latency=0.02) as server:
        _site(server, 50)
        result = _run(server, db)
    assert result.exit_code == 0, result
    assert not server.errors
    assert server.refused[SLOW] == 0, server.refused  # never pushed past 5 at once
    slow = server.levels[SLOW]
    assert len(slow) == 51
    assert max(slow[10:]) <= 4, slow  # after warm-up, held at 3-4 in flight
    assert max(slow[10:]) >= 3, slow  # it did climb to what the host can take
    # The fast host beside it was not held down by its neighbour: it climbed well past 4.
    assert server.max_active[FAST] >= 6, server.levels[FAST]
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(102,)]
    state = dict(rows(db, "SELECT host, concurrency FROM host_state"))
    [(stats,)] = rows(db, "SELECT stats FROM runs")
    port = server.port
    assert state[f"{SLOW}:{port}"] in (3, 4), state
    assert state[f"{FAST}:{port}"] >= 6, state
    assert f"{SLOW}:{port}" in stats  # the per-host line crawler stats shows


@pytest.mark.timeout(150)
def test_the_next_run_starts_from_what_the_first_learned(
    crawl_db: Callable[[str], Path | str],
) -> None:
    db = crawl_db("throttle")
    with LoadServer((SLOW, FAST), slow_hosts=(SLOW,), base_latency=0.02, lifetime=150) as server:
        _site(server, 50, "p")
        assert _run(server, db, "p").exit_code == 0
        first = {a: list(server.levels[a]) for a in (SLOW, FAST)}
        learned = dict(rows(db, "SELECT host, concurrency FROM host_state"))
        server.levels.clear()
        server.max_active.clear()
        _site(server, 50, "q")  # new pages on the same hosts (same ports: same host keys)
        assert _run(server, db, "q").exit_code == 0
        second = {a: list(server.levels[a]) for a in (SLOW, FAST)}
    assert not server.errors
    assert server.refused[SLOW] == 0, server.refused
    port = server.port
    slow_limit, fast_limit = learned[f"{SLOW}:{port}"], learned[f"{FAST}:{port}"]
    assert slow_limit in (3, 4) and fast_limit >= 5, learned
    # The first run warmed up from 1 in flight; the second starts at what was learned: its
    # first leaves (after the lone index page) already run that many at once.
    assert max(first[FAST][1:4]) <= 2, first
    assert max(second[FAST][1:8]) >= fast_limit - 1, second
    assert max(second[SLOW][1:6]) >= 3, second
    assert max(second[SLOW][1:]) <= 4, second  # and the slow host is not pushed past it
