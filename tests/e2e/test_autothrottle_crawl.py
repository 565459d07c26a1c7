"""Autothrottle end to end: a host that slows down past 3 requests at once and refuses past 5
is held at 3-4 in flight with no 503, while a fast host beside it climbs towards per_host 8;
what was learned is stored in ``host_state`` and the next run starts from it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.loadserver import LoadServer

pytestmark = [pytest.mark.slow]

SLOW, FAST = "127.0.0.2", "127.0.0.3"


class LinkSpider(Spider):
    name = "links"
    allowed_domains = [SLOW, FAST]

    def parse(self, response: Response) -> Any:
        yield from response.links()


def _site(server: LoadServer, pages: int) -> None:
    """Per host an index page linking to ``pages`` leaves on that host."""
    paths = [f"/p{i}" for i in range(pages)]
    server.pages = {p: b"<html><body>leaf</body></html>" for p in paths}
    for a in (SLOW, FAST):
        anchors = "".join(f'<a href="{server.url(p, a)}">x</a>' for p in paths)
        server.pages[f"/index-{a}"] = f"<html><body>{anchors}</body></html>".encode()


def _run(server: LoadServer, db: Path) -> Any:
    return crawl(
        LinkSpider,
        settings=Settings(workers=2, per_host=8, timeout=10, robots=False, retries=0),
        db_path=db,
        spider_kwargs={"start_urls": " ".join(server.url(f"/index-{a}", a) for a in (SLOW, FAST))},
    )


@pytest.mark.timeout(120)
def test_a_host_that_slows_past_three_at_once_is_held_at_three_or_four(tmp_path: Path) -> None:
    db = tmp_path / "throttle.db"
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
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM pages WHERE status = 200").fetchone()[0] == 102
        state = dict(conn.execute("SELECT host, concurrency FROM host_state").fetchall())
        stats = conn.execute("SELECT stats FROM runs").fetchone()[0]
    port = server.port
    assert state[f"{SLOW}:{port}"] in (3, 4), state
    assert state[f"{FAST}:{port}"] >= 6, state
    assert f"{SLOW}:{port}" in stats  # the per-host line crawler stats shows
