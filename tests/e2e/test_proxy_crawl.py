"""Crawls through real loopback proxies, and a crawl of a pinned name (``resolve``).

The site is served on 127.0.0.2/127.0.0.3; the proxies are tests/kit/proxies.py servers on
127.0.0.1. We check what each proxy was asked, what the site received, that every page was
stored, and that the proxy's credentials are nowhere in the crawl's database: on both backends
(``crawl_db``), except the 429 case, which asserts only on what the proxies and the site saw.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider
from crawler.urls import url_host
from crawler.worker.proxies import FAILS_TO_COOL, ProxyRotation
from tests.kit.crawl import TitleSpider, page, rows
from tests.kit.proxies import http_proxy, socks5_proxy
from tests.kit.site import Site

pytestmark = pytest.mark.timeout(120)

FAST = Settings(workers=1, timeout=5, retries=1, robots=False)


def three_pages(site: Site, address: str = "127.0.0.2") -> str:
    return site.add_host(
        address,
        {
            "/": page("home", ["/a", "/b"]),
            "/a": page("a", ["/b"]),
            "/b": page("b", ["/"]),
        },
    )


def run(settings: Settings, db: Path | str, start: list[str], spider: Any = TitleSpider) -> Any:
    result = crawl(spider, settings=settings, db_path=db, spider_kwargs={"start_urls": start})
    assert result.exit_code == 0, result
    return result


def no_secret_in(db: Path | str, secret: str) -> None:
    for table in ("runs", "errors", "pages", "frontier"):
        for row in rows(db, f"SELECT * FROM {table}"):
            assert secret not in repr(row), (table, row)


def test_crawl_through_an_http_proxy_with_credentials(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    host = three_pages(site)
    db = crawl_db("crawl")
    with http_proxy(auth=("ann", "s3cretpw")) as proxy:
        run(FAST.replace(proxy=proxy.url(("ann", "s3cretpw"))), db, [f"http://{host}/"])
        targets = sorted(s.target for s in proxy.seen)
    assert targets == [f"http://{host}/", f"http://{host}/a", f"http://{host}/b"]
    assert sorted(p for _, p, _, _ in site.requests) == ["/", "/a", "/b"]
    assert all("proxy-authorization" not in h for _, _, h, _ in site.requests)
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(3,)]
    [(stored,)] = rows(db, "SELECT settings FROM runs")
    assert json.loads(stored)["proxy"] == [f"http://***@127.0.0.1:{proxy.port}"]
    no_secret_in(db, "s3cretpw")


def test_crawl_through_socks5h(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    host = three_pages(site)
    db = crawl_db("crawl")
    with socks5_proxy(auth=("ann", "s0cks")) as proxy:
        url = f"socks5h://ann:s0cks@127.0.0.1:{proxy.port}"
        run(FAST.replace(proxy=url), db, [f"http://{host}/"])
        assert {s.headers["atyp"] for s in proxy.seen} == {"ipv4"}  # the name is an address
        assert proxy.seen and all(s.target == host for s in proxy.seen)
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(3,)]
    no_secret_in(db, "s0cks")


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_proxy_is_rotated_out_and_no_page_is_lost(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    hosts = [three_pages(site, "127.0.0.2"), three_pages(site, "127.0.0.3")]
    db = crawl_db("crawl")
    dead = f"http://ann:deadpw@127.0.0.1:{refused_port()}"
    with http_proxy() as live:
        proxies = [dead, live.url()]
        # Order the list so that the first host's own proxy is the dead one.
        if ProxyRotation(tuple(proxies)).pick(url_host(f"http://{hosts[0]}/"), 0.0) != dead:
            proxies.reverse()
        run(FAST.replace(proxy=proxies, retries=0), db, [f"http://{h}/" for h in hosts])
        assert sorted(s.target for s in live.seen) == sorted(
            f"http://{h}{p}" for h in hosts for p in ("/", "/a", "/b")
        )
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(6,)]
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    no_secret_in(db, "deadpw")


def test_a_proxy_that_drops_connections_is_cooled_down_in_a_crawl(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    # A proxy that accepts each connection and closes it without an answer, in front of a
    # host of 12 pages fetched by 2 workers: every page comes through the live proxy, and
    # each worker stops trying the dead one after FAILS_TO_COOL failures in a row.
    paths = [f"/p{i}" for i in range(11)]
    host = site.add_host("127.0.0.2", {"/": page("home", paths), **{p: page(p, []) for p in paths}})
    db = crawl_db("crawl")
    with http_proxy(fail=True) as dead, http_proxy() as live:
        proxies = [dead.url(("ann", "droppw")), live.url()]
        if ProxyRotation(tuple(proxies)).pick(url_host(f"http://{host}/"), 0.0) != proxies[0]:
            proxies.reverse()
        settings = FAST.replace(proxy=proxies, retries=0, workers=2, per_host=2)
        run(settings, db, [f"http://{host}/"])
        assert 1 <= dead.connections <= 2 * FAILS_TO_COOL
        assert len(live.seen) >= 1
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(12,)]
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    no_secret_in(db, "droppw")


class OwnProxySpider(Spider):
    name = "own_proxy"
    proxy_url = ""

    def start_requests(self) -> Iterator[Request]:
        for url in self.start_urls:
            yield Request(url, proxy=self.proxy_url)

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}


def test_request_proxy_takes_credentials_from_the_setting(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    host = three_pages(site)
    db = crawl_db("crawl")
    with http_proxy(auth=("ann", "pw2")) as proxy, http_proxy() as other:
        OwnProxySpider.proxy_url = proxy.url()  # no credentials in the request itself
        settings = FAST.replace(proxy=[other.url(), proxy.url(("ann", "pw2"))])
        run(settings, db, [f"http://{host}/"], OwnProxySpider)
        assert [s.target for s in proxy.seen] == [f"http://{host}/"]
        assert other.seen == []
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(1,)]
    no_secret_in(db, "pw2")


def test_resolve_crawls_a_pinned_name(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    port = three_pages(site).rpartition(":")[2]
    db = crawl_db("crawl")
    settings = FAST.replace(resolve={"shop.example.test": "127.0.0.2"})
    run(settings, db, [f"http://shop.example.test:{port}/"])
    assert sorted(url for (url,) in rows(db, "SELECT url FROM pages WHERE status = 200")) == [
        f"http://shop.example.test:{port}/",
        f"http://shop.example.test:{port}/a",
        f"http://shop.example.test:{port}/b",
    ]
    assert {h["host"] for _, _, h, _ in site.requests} == {f"shop.example.test:{port}"}
    [(stored,)] = rows(db, "SELECT settings FROM runs")
    assert json.loads(stored)["resolve"] == {"shop.example.test": "127.0.0.2"}


def test_429_is_the_sites_answer_and_never_rotates_proxies(site: Site, tmp_path: Path) -> None:
    host = site.add_host("127.0.0.2", {"/": (429, {"Retry-After": "0"}, "slow down")})
    db = tmp_path / "crawl.db"
    with http_proxy() as a, http_proxy() as b:
        run(FAST.replace(proxy=[a.url(), b.url()], retries=2), db, [f"http://{host}/"])
        seen = [len(a.seen), len(b.seen)]
    assert sorted(seen) == [0, 3]  # one proxy, the first try and 2 retries, then it stops
    assert site.hits[(host, "/")] == 3
