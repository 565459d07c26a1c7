"""Politeness across processes: per_host holds with several workers and several hosts (on both
backends: ``crawl_db``; on PostgreSQL dispatch also goes through the node's host leases)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.engine.dispatch import owner_of, slot_shares
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.crawl import rows
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
def test_per_host_limit_holds_across_worker_processes(
    crawl_db: Callable[[str], Path | str], per_host: int
) -> None:
    paths = [f"/p{i}" for i in range(12)]
    with ConcurrencyServer(ADDRESSES, delay=0.03) as server:
        anchors = "".join(
            f'<a href="http://{a}:{server.port}{p}">x</a>' for a in ADDRESSES for p in paths
        )
        server.pages = {p: f"<html><body>{anchors}</body></html>".encode() for p in ["/", *paths]}
        db = crawl_db("polite")
        result = crawl(
            LinkSpider,
            settings=Settings(workers=2, per_host=per_host, timeout=5, robots=False),
            db_path=db,
            spider_kwargs={"start_urls": " ".join(server.url("/", a) for a in ADDRESSES)},
        )
    assert result.exit_code == 0
    assert rows(db, "SELECT count(*) FROM pages") == [(4 * 13,)]
    hosts = {f"{a}:{server.port}" for a in ADDRESSES}
    assert set(server.max_open_per_host) == hosts
    assert max(server.max_open_per_host.values()) == per_host, server.max_open_per_host
    # All four hosts were crawled at the same time, not one after another.
    assert server.max_open > per_host
    assert not server.errors


class PidSpider(LinkSpider):
    name = "pids"

    def parse(self, response: Response) -> Any:
        yield {"pid": os.getpid()}  # which worker process parsed the page
        yield from response.links()


@pytest.mark.timeout(60)
def test_one_host_is_split_across_workers_within_per_host(
    crawl_db: Callable[[str], Path | str],
) -> None:
    # One host, two workers: each worker holds half of the host's slots (slot_shares), so
    # reaching per_host connections at once takes both workers, and the parent's clock keeps
    # the host's total at per_host.
    per_host = 4
    paths = [f"/p{i}" for i in range(40)]
    with ConcurrencyServer(ADDRESSES[:1], delay=0.05) as server:
        anchors = "".join(f'<a href="{p}">x</a>' for p in paths)
        server.pages = {p: f"<html><body>{anchors}</body></html>".encode() for p in ["/", *paths]}
        db = crawl_db("one-host")
        result = crawl(
            PidSpider,
            settings=Settings(workers=2, per_host=per_host, timeout=5, robots=False),
            db_path=db,
            spider_kwargs={"start_urls": server.url("/", ADDRESSES[0])},
        )
    assert result.exit_code == 0
    assert rows(db, "SELECT count(*) FROM pages") == [(41,)]
    # Both workers fetched and parsed pages of the one host.
    assert rows(db, "SELECT count(DISTINCT pid) FROM items") == [(2,)]
    host = f"{ADDRESSES[0]}:{server.port}"
    assert server.max_open_per_host[host] == per_host, server.max_open_per_host
    assert not server.errors


def test_slot_shares_sum_to_per_host() -> None:
    for per_host in (1, 2, 3, 8):
        for workers in (1, 2, 3, 16):
            shares = slot_shares("a.example", workers, per_host)
            assert sum(shares) == per_host and len(shares) == workers
            assert max(shares) - min(shares) <= 1
    # Fewer slots than workers: the owner gets the one slot, as before the split.
    assert slot_shares("a.example", 4, 1)[owner_of("a.example", 4)] == 1
    # One slot each on one host still spreads hosts over workers (4 hosts, 2 workers: 2+2 is
    # what the split of 8 slots per host gives every worker).
    assert slot_shares("a.example", 2, 8) == (4, 4)
