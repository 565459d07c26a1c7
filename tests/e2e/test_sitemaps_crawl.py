"""Sitemaps in real crawls: from robots.txt and from a spider's ``sitemap_urls``, and a
``lastmod`` that makes a stored page due again (on both backends: ``crawl_db``)."""

from __future__ import annotations

import gzip
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Response, Spider
from tests.kit.crawl import rows
from tests.kit.site import Site

pytestmark = [pytest.mark.slow]

FAST = Settings(workers=2, timeout=5, retries=1)


def urlset(*locs: str, lastmod: dict[str, str] | None = None) -> str:
    dates = lastmod or {}
    entries = "".join(
        f"<url><loc>{loc}</loc><lastmod>{dates.get(loc, '2024-05-01')}</lastmod></url>"
        for loc in locs
    )
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'


def index(*locs: str) -> str:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'


class TitleSpider(Spider):
    name = "titles"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "title": response.css("title::text").get(), "via": "parse"}


class ProductSpider(TitleSpider):
    name = "products"
    sitemap_callback = "parse_product"

    def parse_product(self, response: Response) -> Any:
        yield {"url": response.url, "title": response.css("title::text").get(), "via": "sitemap"}


def titled(title: str) -> str:
    return f"<html><head><title>{title}</title></head><body></body></html>"


@pytest.mark.timeout(60)
def test_robots_sitemap_index_with_a_gzip_child(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    routes: dict[str, Any] = {"/": titled("home")}
    host = site.add_host("127.0.0.2", routes)
    base = f"http://{host}"
    routes["/robots.txt"] = (200, {}, f"User-agent: *\nAllow: /\nSitemap: {base}/index.xml\n")
    routes["/index.xml"] = (200, {"Content-Type": "application/xml"}, index(
        f"{base}/a.xml.gz", f"{base}/b.xml", f"{base}/broken.xml"
    ))  # fmt: skip
    routes["/a.xml.gz"] = (
        200,
        {"Content-Type": "application/gzip"},
        gzip.compress(urlset(f"{base}/s1", f"{base}/s2").encode()),
    )
    routes["/b.xml"] = (200, {"Content-Type": "application/xml"}, urlset(f"{base}/s3"))
    routes["/broken.xml"] = (200, {"Content-Type": "application/xml"}, "<html>not a sitemap</html>")
    for name in ("s1", "s2", "s3"):
        routes[f"/{name}"] = titled(name)
    db = crawl_db("sm")

    result = crawl(TitleSpider, settings=FAST, db_path=db, spider_kwargs={"start_urls": base + "/"})

    assert result.exit_code == 0, result
    items = dict(rows(db, "SELECT url, title FROM items"))
    assert items == {f"{base}/": "home", f"{base}/s1": "s1", f"{base}/s2": "s2", f"{base}/s3": "s3"}
    assert rows(db, "SELECT url, kind FROM errors") == [(f"{base}/broken.xml", "sitemap")]
    assert all(n == 1 for n in site.hits.values()), site.hits


@pytest.mark.timeout(60)
def test_spider_sitemap_urls_go_to_its_sitemap_callback(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    routes: dict[str, Any] = {"/p1": titled("p1"), "/p2": titled("p2")}
    host = site.add_host("127.0.0.2", routes)
    base = f"http://{host}"
    other = "http://127.0.0.9:9/offsite"  # listed, but outside the spider's domains: skipped
    routes["/sitemap.txt"] = (
        200,
        {"Content-Type": "text/plain"},
        f"{base}/p1\n{base}/p2\n{other}\n",
    )
    db = crawl_db("sp")

    result = crawl(
        ProductSpider,
        settings=FAST.replace(robots=False),
        db_path=db,
        spider_kwargs={"sitemap_urls": f"{base}/sitemap.txt", "allowed_domains": "127.0.0.2"},
    )

    assert result.exit_code == 0, result
    assert sorted(rows(db, "SELECT title, via FROM items")) == [
        ("p1", "sitemap"),
        ("p2", "sitemap"),
    ]
    assert result.stats["skipped_urls"] == 1


@pytest.mark.timeout(60)
def test_a_newer_lastmod_fetches_the_page_again_conditionally(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    titles = {"/p1": "p1", "/p2": "p2"}
    routes: dict[str, Any] = {}
    host = site.add_host("127.0.0.2", routes)
    base = f"http://{host}"
    lastmod: dict[str, str] = {}
    routes["/sitemap.xml"] = lambda _path: (
        200,
        {"Content-Type": "application/xml"},
        urlset(f"{base}/p1", f"{base}/p2", lastmod=lastmod),
    )
    for path in titles:
        routes[path] = lambda path: (200, {"ETag": f'"{titles[path]}"'}, titled(titles[path]))
    db = crawl_db("lm")
    kwargs = {"sitemap_urls": f"{base}/sitemap.xml", "allowed_domains": "127.0.0.2"}
    settings = FAST.replace(robots=False)

    first = crawl(ProductSpider, settings=settings, db_path=db, spider_kwargs=kwargs)
    assert first.exit_code == 0, first
    assert sorted(rows(db, "SELECT title FROM items")) == [("p1",), ("p2",)]

    # The site changes p1 and says so in its sitemap: a lastmod after our fetch of it (to the
    # second, rounded up). p2 keeps its old date; recrawl_after is never (the default).
    titles["/p1"] = "p1 changed"
    lastmod[f"{base}/p1"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(time.time())))
    mark = len(site.requests)
    second = crawl(ProductSpider, settings=settings, db_path=db, spider_kwargs=kwargs)

    assert second.exit_code == 0, second
    sent = [(path, headers) for _h, path, headers, _t in site.requests[mark:]]
    assert [path for path, _ in sent] == ["/sitemap.xml", "/p1"]
    assert sent[1][1].get("if-none-match") == '"p1"'  # still conditional: validators kept
    items = dict(rows(db, "SELECT url, title FROM items"))
    assert items == {f"{base}/p1": "p1 changed", f"{base}/p2": "p2"}
