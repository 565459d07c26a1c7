"""What the processes of a crawl import: each only what it uses (docs/architecture.md, "What
each process imports").

A module the engine has loaded when it forks is resident in every worker, and summed resident
memory is what the crawl is measured by. So a plain-HTTP crawl whose spider never calls
``css()``/``xpath()`` (and sets ``preload = ()``) loads neither parsel nor ``ssl`` anywhere,
a worker never loads the store's sqlite-utils, and the parent builds no cookie jar (which
brings ``urllib.request`` and ``ssl``) when no cookie comes. With the default ``preload`` each
worker has parsel loaded before its first page (imported while the engine opens the store),
and the engine, which never parses, has none of it.

The crawl runs in a fresh ``python -c`` child: this test process has loaded all of these
already, and a worker forked from it would inherit them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crawler import Settings
from crawler.engine import crawl
from crawler.errors import SpiderLoadError
from tests.kit.crawl import TitleSpider, page, rows
from tests.kit.site import Site

_SETTINGS = Settings(workers=2, robots=False, sitemaps=False, delay=0.0, autothrottle=False)

_CRAWL = """
import json, sys
from crawler import Settings, Spider
from crawler.engine import crawl

WATCH = ("ssl", "parsel", "w3lib", "http.client", "http.cookiejar", "urllib.request",
         "sqlite_utils", "zstandard", "email.utils", "cssselect")


def loaded():
    return " ".join(m for m in WATCH if m in sys.modules)


class Links(Spider):
    name = "links"
    preload = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.at_start = loaded()  # in a worker: what it started with, right after the fork

    def parse(self, response):
        yield {{"url": response.url, "at_start": self.at_start, "after": loaded()}}
        yield from response.links()


class Titles(Links):
    name = "titles"
    preload = Spider.preload

    def parse(self, response):
        title = response.css("title::text").get()
        yield {{"url": response.url, "at_start": self.at_start, "after": loaded(), "t": title}}
        yield from response.links()


spider = {{"links": Links, "titles": Titles}}[sys.argv[1]]
settings = Settings(workers=2, robots=False, sitemaps=False, delay=0.0, autothrottle=False)
result = crawl(spider, settings=settings, db_path={db!r}, spider_kwargs={{"start_urls": {start!r}}})
print(json.dumps({{"exit": result.exit_code, "parent": loaded()}}))
"""


def _crawl(
    site: Site, tmp_path: Path, spider: str
) -> tuple[dict[str, object], list[tuple[str, str]]]:
    host = site.add_host(
        "127.0.0.1",
        {f"/p{i}": page(f"page {i}", [f"/p{j}" for j in range(6)]) for i in range(6)},
    )
    db = tmp_path / f"{spider}.db"
    code = _CRAWL.format(db=str(db), start=f"http://{host}/p0")
    out = subprocess.run(
        [sys.executable, "-c", code, spider], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["exit"] == 0
    items = [(str(a), str(b)) for a, b in rows(db, "SELECT at_start, after FROM items")]
    assert len(items) == 6
    return summary, items


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_plain_http_links_only_crawl_loads_no_parsel_ssl_or_store_in_workers(
    site: Site, tmp_path: Path
) -> None:
    summary, items = _crawl(site, tmp_path, "links")
    for at_start, after in items:
        assert at_start == "" and after == "", (at_start, after)
    # The parent has the store (sqlite-utils) and nothing of parsel, ssl or the cookie jar.
    parent = set(str(summary["parent"]).split())
    assert "sqlite_utils" in parent
    assert parent.isdisjoint({"ssl", "parsel", "w3lib", "http.cookiejar", "urllib.request"})


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_preloaded_parsel_is_in_every_worker_before_its_first_page_and_not_in_the_parent(
    site: Site, tmp_path: Path
) -> None:
    summary, items = _crawl(site, tmp_path, "titles")
    for at_start, _after in items:
        assert "parsel" in at_start.split(), at_start
        assert "sqlite_utils" not in at_start.split(), at_start
    parent = set(str(summary["parent"]).split())
    assert "sqlite_utils" in parent
    assert parent.isdisjoint({"parsel", "w3lib", "cssselect"}), parent


class _Preloads(TitleSpider):
    name = "preloads"


@pytest.mark.timeout(120)
def test_a_preload_that_names_no_module_stops_the_crawl_before_it_starts(
    site: Site, tmp_path: Path
) -> None:
    host = site.add_host("127.0.0.1", {"/": page("home", [])})

    class Missing(_Preloads):
        preload = ("parsel", "no_such_module_for_crawler_tests")

    with pytest.raises(SpiderLoadError, match="no_such_module_for_crawler_tests"):
        crawl(Missing, settings=_SETTINGS, db_path=tmp_path / "c.db",
              spider_kwargs={"start_urls": f"http://{host}/"})  # fmt: skip
    assert site.requests == []


@pytest.mark.timeout(120)
def test_a_preload_that_raises_on_import_leaves_the_workers_crawling(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by name, so the engine starts; its import raises in each worker, which logs it
    # and goes on: the pages are fetched and stored as usual.
    (tmp_path / "raises_on_import_for_crawler_tests.py").write_text("raise RuntimeError('no')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = site.add_host(
        "127.0.0.1", {f"/p{i}": page(f"page {i}", [f"/p{j}" for j in range(4)]) for i in range(4)}
    )

    class Raises(_Preloads):
        preload = ("raises_on_import_for_crawler_tests",)

    db = tmp_path / "c.db"
    result = crawl(Raises, settings=_SETTINGS, db_path=db,
                   spider_kwargs={"start_urls": f"http://{host}/p0"})  # fmt: skip
    assert result.exit_code == 0
    assert sorted(t for (t,) in rows(db, "SELECT title FROM items")) == [
        f"page {i}" for i in range(4)
    ]
