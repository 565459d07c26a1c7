"""End-to-end crawls of a local multi-host site, asserting on rows in the database (on both
backends: ``crawl_db``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.crawl import TitleSpider, page, rows
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

FAST = Settings(workers=2, timeout=5, retries=1, robots=False)


def two_host_site(site: Site, n: int = 10) -> tuple[str, str]:
    b_routes: dict[str, Any] = {}
    b = site.add_host("127.0.0.3", b_routes)
    a_routes: dict[str, Any] = {"/": page("home", [f"/p{i}" for i in range(n)] + [f"http://{b}/"])}
    for i in range(n):
        a_routes[f"/p{i}"] = page(f"p{i}", [f"/p{(i + 1) % n}", "/", f"http://{b}/b{i % 3}"])
    a = site.add_host("127.0.0.2", a_routes)
    b_routes["/"] = page("b home", [f"http://{a}/", "/b0", "/b1", "/b2"])
    for i in range(3):
        b_routes[f"/b{i}"] = page(f"b{i}", ["/", "/missing"])
    return a, b


@pytest.mark.timeout(60)
def test_all_pages_reached_exactly_once(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    a, b = two_host_site(site)
    db = crawl_db("crawl")
    result = crawl(
        TitleSpider,
        settings=FAST,
        db_path=db,
        spider_kwargs={"start_urls": f"http://{a}/", "allowed_domains": "127.0.0.2 127.0.0.3"},
    )
    assert result.exit_code == 0, result
    assert result.finish_reason == "finished"
    urls = {u for (u,) in rows(db, "SELECT url FROM pages")}
    expected = {f"http://{a}/"} | {f"http://{a}/p{i}" for i in range(10)}
    expected |= {f"http://{b}/", f"http://{b}/missing"} | {f"http://{b}/b{i}" for i in range(3)}
    assert urls == expected
    assert all(n == 1 for n in site.hits.values()), site.hits
    assert rows(db, "SELECT status FROM pages WHERE url = ?", f"http://{b}/missing") == [(404,)]
    titles = dict(rows(db, "SELECT url, title FROM items"))
    assert titles[f"http://{a}/p3"] == "p3"
    assert len(titles) == 15  # no item for the 404
    assert result.stats["pages"] == 16
    assert result.stats["by_status"] == {"200": 15, "404": 1}
    (run,) = rows(db, "SELECT exit_code, finish_reason FROM runs")
    assert run == (0, "finished")


def free_port(address: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class RedirectSpider(Spider):
    name = "redirects"
    seen: list[tuple[str, list[str]]]

    def parse(self, response: Response) -> Any:
        yield {
            "url": response.url,
            "hops": ",".join(response.meta.get("redirect_urls", [])),
        }
        yield from response.links()


@pytest.mark.timeout(60)
def test_redirect_chains(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    b = site.add_host("127.0.0.3", {"/landing": page("landing", [])})
    routes: dict[str, Any] = {
        "/": page("home", ["/r1", "/loop", "/long0", "/ftp", "/x1"]),
        "/r1": (301, {"Location": "/r2"}, ""),
        "/r2": (302, {"Location": f"http://{b}/landing"}, ""),
        "/loop": (302, {"Location": "/loop2"}, ""),
        "/loop2": (302, {"Location": "/loop"}, ""),
        "/ftp": (302, {"Location": "ftp://127.0.0.1/file"}, ""),
        "/x1": (302, {"Location": "/x2"}, ""),
        "/x2": (302, {"Location": "/"}, ""),  # back to a page already fetched
    }
    for i in range(5):
        routes[f"/long{i}"] = (302, {"Location": f"/long{i + 1}"}, "")
    a = site.add_host("127.0.0.2", routes)
    db = crawl_db("r")
    result = crawl(
        RedirectSpider,
        settings=FAST.replace(max_redirects=3),
        db_path=db,
        spider_kwargs={"start_urls": f"http://{a}/", "allowed_domains": "127.0.0.2,127.0.0.3"},
    )
    assert result.exit_code == 0
    hops = dict(rows(db, "SELECT url, hops FROM items"))
    assert hops[f"http://{b}/landing"] == f"http://{a}/r1,http://{a}/r2"
    assert rows(db, "SELECT status, location FROM pages WHERE url = ?", f"http://{a}/r1") == [
        (301, f"http://{a}/r2")
    ]
    # The loop ends at dedup: /loop -> /loop2 -> /loop (already known), each fetched once.
    assert site.hits[(a, "/loop")] == 1 and site.hits[(a, "/loop2")] == 1
    assert site.hits[(a, "/")] == 1
    # long0 -> long1 -> long2 -> long3 is 3 hops; the redirect from long3 is one too many.
    assert site.hits[(a, "/long3")] == 1 and site.hits[(a, "/long4")] == 0
    errors = rows(db, "SELECT url, kind FROM errors ORDER BY url")
    assert (f"http://{a}/long3", "redirect") in errors
    assert (f"http://{a}/ftp", "redirect") in errors
    assert result.stats["redirects"] >= 6


class FailingSpider(Spider):
    name = "failing"

    def parse(self, response: Response) -> Any:
        yield from response.links()
        if response.url.endswith("/boom"):
            raise RuntimeError("callback exploded")
        yield {"url": response.url}


@pytest.mark.timeout(60)
def test_callback_error_refused_host_and_retry(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    attempts = {"n": 0}

    def flaky(path: str) -> tuple[int, dict[str, str], str]:
        attempts["n"] += 1
        if attempts["n"] == 1:
            return 503, {"Retry-After": "0"}, "busy"
        return 200, {}, page("flaky", [])

    refused = f"127.0.0.4:{free_port('127.0.0.4')}"
    a = site.add_host(
        "127.0.0.2",
        {
            "/": page("home", ["/boom", "/flaky", f"http://{refused}/", "/after"]),
            "/boom": page("boom", ["/after-boom"]),
            "/after-boom": page("after boom", []),
            "/flaky": flaky,
            "/after": page("after", []),
        },
    )
    db = crawl_db("e")
    result = crawl(
        FailingSpider,
        settings=FAST.replace(retries=1),
        db_path=db,
        spider_kwargs={"start_urls": f"http://{a}/", "allowed_domains": "127.0.0.2 127.0.0.4"},
    )
    assert result.exit_code == 0
    (tb,) = rows(db, "SELECT traceback FROM errors WHERE kind = 'callback'")
    assert "callback exploded" in tb[0] and "Traceback" in tb[0]
    assert rows(db, "SELECT status FROM pages WHERE url = ?", f"http://{a}/boom") == [(200,)]
    # Links yielded before the exception are still followed.
    assert rows(db, "SELECT status FROM pages WHERE url = ?", f"http://{a}/after-boom") == [(200,)]
    assert rows(db, "SELECT kind FROM errors WHERE url = ?", f"http://{refused}/") == [("connect",)]
    assert attempts["n"] == 2
    assert rows(db, "SELECT status FROM pages WHERE url = ?", f"http://{a}/flaky") == [(200,)]
    assert result.stats["retries"] == 2  # the 503 and the first refused connect


@pytest.mark.timeout(60)
def test_max_pages_then_resume(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    a, _b = two_host_site(site)
    db = crawl_db("m")
    kwargs = {"start_urls": f"http://{a}/", "allowed_domains": "127.0.0.2 127.0.0.3"}
    first = crawl(TitleSpider, settings=FAST.replace(max_pages=5), db_path=db, spider_kwargs=kwargs)
    assert (first.exit_code, first.finish_reason) == (4, "max_pages")
    assert rows(db, "SELECT count(*) FROM pages") == [(5,)]
    second = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert (second.exit_code, second.finish_reason) == (0, "finished")
    assert rows(db, "SELECT count(*) FROM pages") == [(16,)]
    assert rows(db, "SELECT count(*), count(DISTINCT page_url) FROM items") == [(15, 15)]
    # The start URL is asked for again on every run (issue 4: new links are found there; its
    # body hash is unchanged, so it is not parsed again); every other page exactly once.
    assert site.hits.pop((a, "/")) == 2
    assert all(n == 1 for n in site.hits.values()), site.hits
    assert rows(db, "SELECT exit_code FROM runs ORDER BY id") == [(4,), (0,)]
    assert second.stats["unchanged"] == 1
    # A third run fetches only the start URL, which is unchanged; fresh=True starts over.
    third = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs)
    assert (third.stats["pages"], third.stats["unchanged"]) == (1, 1)
    again = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs=kwargs, fresh=True)
    assert again.stats["pages"] == 16
    assert rows(db, "SELECT count(*) FROM pages") == [(16,)]


@pytest.mark.timeout(60)
def test_max_depth_prunes(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    routes = {f"/d{i}": page(f"d{i}", [f"/d{i + 1}"]) for i in range(10)}
    a = site.add_host("127.0.0.2", routes)
    db = crawl_db("d")
    result = crawl(
        TitleSpider,
        settings=FAST.replace(max_depth=3),
        db_path=db,
        spider_kwargs={"start_urls": f"http://{a}/d0"},
    )
    assert result.exit_code == 0
    assert rows(db, "SELECT url, depth FROM pages ORDER BY depth") == [
        (f"http://{a}/d{i}", i) for i in range(4)
    ]


class TwiceSpider(Spider):
    name = "twice"

    def start_requests(self) -> Any:
        from crawler.spider import Request

        yield self.start_urls[0]
        yield Request(self.start_urls[0], dont_filter=True)

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "n": 1}
        yield {"url": response.url, "n": 2}


@pytest.mark.timeout(60)
def test_items_replaced_on_reparse(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    a = site.add_host("127.0.0.2", {"/": page("home", [])})
    db = crawl_db("i")
    result = crawl(
        TwiceSpider, settings=FAST, db_path=db, spider_kwargs={"start_urls": f"http://{a}/"}
    )
    assert result.exit_code == 0
    assert site.hits[(a, "/")] == 2
    assert result.stats["items"] == 4
    assert rows(db, "SELECT n FROM items ORDER BY n") == [(1,), (2,)]
    assert rows(db, "SELECT count(*) FROM pages") == [(1,)]
