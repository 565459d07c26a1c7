"""Politeness across processes: per_host holds with several workers and several hosts."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.servers import ConcurrencyServer

pytestmark = [pytest.mark.slow]

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


class LinkSpider(Spider):
    name = "links"
    allowed_domains = list(ADDRESSES)

    def parse(self, response: Response) -> Any:
        yield from response.links()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("per_host", [1, 2])
def test_per_host_limit_holds_across_worker_processes(tmp_path: Path, per_host: int) -> None:
    paths = [f"/p{i}" for i in range(12)]
    with ConcurrencyServer(ADDRESSES, delay=0.03) as server:
        anchors = "".join(
            f'<a href="http://{a}:{server.port}{p}">x</a>' for a in ADDRESSES for p in paths
        )
        server.pages = {p: f"<html><body>{anchors}</body></html>".encode() for p in ["/", *paths]}
        db = tmp_path / "polite.db"
        result = crawl(
            LinkSpider,
            settings=Settings(workers=2, per_host=per_host, timeout=5, robots=False),
            db_path=db,
            spider_kwargs={"start_urls": " ".join(server.url("/", a) for a in ADDRESSES)},
        )
    assert result.exit_code == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM pages").fetchone()[0] == 4 * 13
    hosts = {f"{a}:{server.port}" for a in ADDRESSES}
    assert set(server.max_open_per_host) == hosts
    assert max(server.max_open_per_host.values()) == per_host, server.max_open_per_host
    # All four hosts were crawled at the same time, not one after another.
    assert server.max_open > per_host
    assert not server.errors
