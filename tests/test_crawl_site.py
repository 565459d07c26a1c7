"""End-to-end crawls of a local multi-host site, asserting on rows in SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider

from .conftest import Site

pytestmark = [pytest.mark.slow]

FAST = Settings(workers=2, timeout=5, retries=1, robots=False)


def page(title: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>"


class TitleSpider(Spider):
    name = "titles"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


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
def test_all_pages_reached_exactly_once(site: Site, tmp_path: Path) -> None:
    a, b = two_host_site(site)
    db = tmp_path / "crawl.db"
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
