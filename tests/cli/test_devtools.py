"""``crawler shell``, ``parse`` and ``reparse`` against loopback sites; the shell also through
a pseudo-terminal, reparse with the server stopped."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils

from crawler.engine.runlock import RunLock
from tests.kit.project import invoke, make_project, subprocess_env
from tests.kit.site import Site

SHOP = """
from crawler import Spider

class ShopSpider(Spider):
    name = "shop"
    user_agent = "shop-bot/1.0"

    def parse(self, response):
        for href in response.css("a.product::attr(href)").getall():
            yield response.follow(href, callback="parse_product")

    def parse_product(self, response):
        yield {{"sku": response.css("#sku::text").get(), "price": {price}}}

    def parse_broken(self, response):
        yield {{"ok": 1}}
        raise ValueError("selector went wrong")
"""
PRICE = 'response.css("#price::text").get()'


def product(sku: str, price: str) -> str:
    return f'<html><body><p id="sku">{sku}</p><p id="price">{price}</p></body></html>'


def serve_shop(site: Site, robots: str = "") -> str:
    robots_reply = (200, {"Content-Type": "text/plain"}, robots) if robots else (404, {}, "")
    host = site.add_host(
        "127.0.0.1",
        {
            "/robots.txt": robots_reply,
            "/": '<html><body><title>Shop</title><a class="product" href="/p/1">1</a>'
            '<a class="product" href="/p/2">2</a></body></html>',
            "/p/1": product("A1", "10.00"),
            "/p/2": product("B2", "20.00"),
            "/old": (301, {"Location": "/p/2"}, ""),
        },
    )  # fmt: skip
    return f"http://{host}/"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(make_project(tmp_path, {"shop.py": SHOP.format(price=PRICE)}))
    return tmp_path


# --- shell ----------------------------------------------------------------------------------


def test_shell_code_sees_response_request_spider_fetch_and_view(project: Path, site: Site) -> None:
    start = serve_shop(site)
    code = (
        "print(response.status, response.css('title::text').get(), request.url, spider.name)\n"
        f"fetch({start + 'p/1'!r})\n"
        "print(response.css('#sku::text').get(), response.url)\n"
        "path = view(response)\n"
        "import pathlib\n"
        "print('viewed', pathlib.Path(path).read_bytes() == response.body)\n"
    )
    result = invoke("shell", start, "--spider", "shop", "-c", code)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"200 Shop {start} shop"
    assert lines[1] == f"A1 {start}p/1"
    assert lines[2] == "viewed True"
    assert "body written to " in result.stderr
    # The spider's User-Agent on every request, robots.txt asked first; nothing crawled.
    paths = [path for _, path, _, _ in site.requests]
    assert paths == ["/robots.txt", "/", "/p/1"]
    assert {h["user-agent"] for _, _, h, _ in site.requests} == {"shop-bot/1.0"}
    assert not (project / "data").exists()


def test_fetcher_adds_the_headers_of_its_hook_on_every_request(site: Site) -> None:
    """The hook a cookie jar plugs into: asked per URL, its headers go out with the request."""
    from crawler.devtools import Fetcher
    from crawler.settings import Settings

    start = serve_shop(site)
    asked: list[str] = []

    def cookies(url: str) -> dict[str, str]:
        asked.append(url)
        return {"Cookie": "session=s3cret"}

    fetcher = Fetcher(Settings(robots=False), extra_headers=cookies)
    try:
        response = fetcher.fetch(start + "old")
    finally:
        fetcher.close()
    # A redirect is followed: the response is the last hop's, as a callback sees it in a crawl.
    assert response.url == start + "p/2" and response.meta["redirect_urls"] == [start + "old"]
    assert response.css("#sku::text").get() == "B2"
    assert asked == [start + "old", start + "p/2"]  # asked again for every hop
    assert [(path, h["cookie"]) for _, path, h, _ in site.requests] == [
        ("/old", "session=s3cret"),
        ("/p/2", "session=s3cret"),
    ]


def test_shell_obeys_robots_txt_unless_told_not_to(project: Path, site: Site) -> None:
    start = serve_shop(site, robots="User-agent: *\nDisallow: /\n")
    result = invoke("shell", start, "--spider", "shop", "-c", "print('reached')")
    assert result.exit_code == 1
    assert "robots.txt disallows" in result.stderr and "reached" not in result.stdout
    result = invoke("shell", start, "-s", "robots=false", "-c", "print(response.status)")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "200"


def test_shell_code_that_raises_exits_1_with_its_traceback(project: Path, site: Site) -> None:
    start = serve_shop(site)
    result = invoke("shell", start, "-c", "response.css('#nothing::text').get().strip()")
    assert result.exit_code == 1
    assert "AttributeError" in result.stderr and 'File "<crawler shell -c>"' in result.stderr


@pytest.mark.timeout(60)
def test_shell_reads_a_script_piped_to_stdin(project: Path, site: Site) -> None:
    start = serve_shop(site)
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "shell", start + "p/1", "--spider", "shop"],
        input="print('price', response.css('#price::text').get())\n",
        cwd=project, capture_output=True, text=True, timeout=50, env=subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "price 10.00" in proc.stdout


def _read_until(fd: int, marker: bytes, deadline: float) -> bytes:
    seen = b""
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {marker!r}; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.timeout(60)
def test_shell_is_interactive_on_a_terminal(project: Path, site: Site) -> None:
    start = serve_shop(site)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "shell", start + "p/2", "--spider", "shop"],
        stdin=child, stdout=child, stderr=child, cwd=project, env=subprocess_env(),
    )  # fmt: skip
    os.close(child)
    try:
        deadline = time.monotonic() + 45
        banner = _read_until(main, b">>> ", deadline)
        assert b"crawler shell" in banner and b"200 " in banner
        os.write(main, b"print('sku=' + response.css('#sku::text').get())\n")
        assert b"sku=B2" in _read_until(main, b"sku=B2", deadline)
        os.write(main, b"exit()\n")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)


# --- parse ----------------------------------------------------------------------------------


def test_parse_prints_requests_and_with_depth_the_items_behind_them(
    project: Path, site: Site
) -> None:
    start = serve_shop(site)
    result = invoke("parse", start, "--spider", "shop")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"# {start} (callback parse, depth 0)",
        f"request GET {start}p/1 -> parse_product",
        f"request GET {start}p/2 -> parse_product",
    ]
    result = invoke("parse", start, "--spider", "shop", "--depth", "2")
    assert result.exit_code == 0, result.output
    assert 'item {"price": "10.00", "sku": "A1"}' in result.stdout
    assert 'item {"price": "20.00", "sku": "B2"}' in result.stdout
    result = invoke("parse", start + "p/1", "--spider", "shop", "--callback", "parse_product")
    assert result.stdout.splitlines()[1:] == ['item {"price": "10.00", "sku": "A1"}']
    assert not (project / "data").exists()


def test_parse_shows_a_callback_error_with_its_traceback_and_exits_1(
    project: Path, site: Site
) -> None:
    start = serve_shop(site)
    result = invoke("parse", start, "--spider", "shop", "--callback", "parse_broken")
    assert result.exit_code == 1
    assert 'item {"ok": 1}' in result.stdout  # what it yielded before raising
    assert "ValueError: selector went wrong" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "in parse_broken" in result.stderr
    result = invoke("parse", start + "gone", "--spider", "shop")
    assert result.exit_code == 0 and result.stdout.splitlines()[1:] == []
    assert "status 404 is not passed to callbacks" in result.stderr
    result = invoke("parse", start, "--spider", "shop", "--callback", "nope")
    assert result.exit_code == 1 and "has no method 'nope'" in result.stderr


# --- reparse --------------------------------------------------------------------------------


def _crawler(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter each time, so an edited spider file is imported anew."""
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=project, capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reparse_reports_what_new_code_yields_differently_offline(
    project: Path, site: Site
) -> None:
    start = serve_shop(site)
    crawl = _crawler(project, "run", "shop", "-a", f"start_urls={start}", "--workers", "1", "-q")
    assert crawl.returncode == 0, crawl.stderr
    db = project / "data" / "shop.db"
    site.stop()  # from here on, nothing may reach the site
    hits = len(site.requests)

    same = _crawler(project, "reparse", "shop")
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    assert "reparse of run 1: 3 pages, 2 items; 0 added, 0 removed, 0 changed" in same.stderr

    # The selector changes: prices as numbers, and a new field.
    new_price = 'float(response.css("#price::text").get()), "cur": "EUR"'
    (project / "spiders" / "shop.py").write_text(SHOP.format(price=new_price))
    changed = _crawler(project, "reparse", "shop", "--run", "1")
    assert changed.returncode == 0, changed.stderr
    assert sorted(changed.stdout.splitlines()) == [
        f'changed {start}p/1 cur: null -> "EUR", price: "10.00" -> 10.0',
        f'changed {start}p/2 cur: null -> "EUR", price: "20.00" -> 20.0',
    ]
    assert "0 added, 0 removed, 2 changed" in changed.stderr
    assert [r["id"] for r in sqlite_utils.Database(db).table("runs").rows] == [1]

    written = _crawler(project, "reparse", "shop", "--write")
    assert written.returncode == 0, written.stderr
    assert "stored as run 2" in written.stderr
    rows = sqlite_utils.Database(db).execute("SELECT sku, price, cur, run_id FROM items").fetchall()
    # price keeps its TEXT column (typed by its first value): 10.0 is stored as '10.0'
    assert sorted(rows) == [("A1", "10.0", "EUR", 2), ("B2", "20.0", "EUR", 2)]
    run = (
        sqlite_utils.Database(db)
        .execute("SELECT finish_reason, exit_code FROM runs WHERE id = 2")
        .fetchone()
    )
    assert run == ("reparse", 0)
    # Run 2 stored no bodies of its own: reparse --run 1 again now compares with run 2's items.
    again = _crawler(project, "reparse", "shop", "--run", "1")
    assert "0 added, 0 removed, 0 changed" in again.stderr, again.stderr

    # --write while a crawl holds the database: "try again later", nothing written.
    with RunLock(db):
        locked = _crawler(project, "reparse", "shop", "--write")
    assert locked.returncode == 75, locked.stderr
    assert len(list(sqlite_utils.Database(db).table("runs").rows)) == 2

    # A product page that no longer yields its item is reported as removed; errors exit 1.
    (project / "spiders" / "shop.py").write_text(
        SHOP.format(price=PRICE)
        .replace('yield {"sku"', 'if False: yield {"sku"')
        .replace("def parse(self, response):", "def parse(self, response):\n        1 / 0")
    )
    broken = _crawler(project, "reparse", "shop", "--run", "1")
    assert broken.returncode == 1
    assert "ZeroDivisionError" in broken.stderr
    assert "2 removed" in broken.stderr, broken.stderr
    assert len(site.requests) == hits


def test_reparse_without_runs_or_bodies_says_so(project: Path, tmp_path: Path) -> None:
    result = invoke("reparse", "shop")
    assert result.exit_code == 1 and "no database at" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reparse_leaves_robots_and_sitemap_bodies_to_the_crawler(project: Path, site: Site) -> None:
    host = site.add_host("127.0.0.1", {})
    start = f"http://{host}/"
    site.servers[0].routes.update(
        {
            "/robots.txt": (200, {}, f"User-agent: *\nAllow: /\nSitemap: {start}sitemap.xml\n"),
            "/sitemap.xml": (
                200,
                {"Content-Type": "application/xml"},
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{start}p/1</loc></url></urlset>",
            ),
            "/": '<html><body><a class="product" href="/p/2">2</a></body></html>',
            "/p/1": product("A1", "10.00"),
            "/p/2": product("B2", "20.00"),
        }
    )
    crawl = _crawler(project, "run", "shop", "-a", f"start_urls={start}", "--workers", "1", "-q")
    assert crawl.returncode == 0, crawl.stderr
    site.stop()
    result = _crawler(project, "reparse", "shop")
    assert result.returncode == 0, result.stderr
    assert "0 added, 0 removed, 0 changed" in result.stderr
    assert "Error" not in result.stderr
