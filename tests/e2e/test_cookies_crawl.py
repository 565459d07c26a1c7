"""Cookies through whole crawls on loopback: one jar across hosts served by different worker
processes, a request's own cookies and sessions, the jar saved and restored by the next run,
and cookie values kept out of logs, ``runs.settings`` and error rows. The tests that store a
jar run on both backends (``crawl_db``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.engine.dispatch import owner_of
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider
from crawler.urls import url_host
from tests.kit.crawl import rows
from tests.kit.site import Site

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SECRET = "s3cr3t-Value-42"
FAST = Settings(workers=2, timeout=5, retries=0, robots=False)


def _cookies_seen(site: Site, path: str) -> list[str]:
    return [h.get("cookie", "") for _, p, h, _ in site.requests if p == path]


def test_cookie_set_on_one_port_is_sent_to_another_in_another_worker(
    site: Site, tmp_path: Path
) -> None:
    # Cookies ignore ports (RFC 6265 section 8.5): two ports of 127.0.0.2 are two hosts for
    # politeness, owned by two different workers here, and one site for the jar.
    other = site.add_host("127.0.0.2", {"/b": "<p>b</p>", "/c": "<p>c</p>"})
    for _ in range(20):
        first = site.add_host(
            "127.0.0.2",
            {"/a": (200, {"Set-Cookie": f"sid={SECRET}; Path=/; HttpOnly"}, "<p>a</p>")},
        )
        if owner_of(first, 2) != owner_of(other, 2):
            break
    assert owner_of(first, 2) != owner_of(other, 2)

    class S(Spider):
        name = "cookies"

        def start_requests(self) -> Any:
            yield Request(f"http://{first}/a", callback=self.parse)

        def parse(self, response: Response) -> Any:
            if response.url.endswith("/a"):
                yield Request(f"http://{other}/b")
                yield Request(f"http://{other}/c", cookies={"extra": "1"})

    db = tmp_path / "c.db"
    result = crawl(S, settings=FAST, db_path=db)
    assert result.exit_code == 0
    assert _cookies_seen(site, "/a") == [""]
    assert _cookies_seen(site, "/b") == [f"sid={SECRET}"]
    assert _cookies_seen(site, "/c") == [f"sid={SECRET}; extra=1"]
    # Saved for the next run; the request's own cookie was not put in the jar.
    assert rows(db, "SELECT session, name, value FROM cookies") == [("", "sid", SECRET)]


def test_jar_restored_by_next_run_expired_dropped(
    site: Site, crawl_db: Callable[[str], Path | str]
) -> None:
    host = site.add_host(
        "127.0.0.2",
        {
            "/set": (
                200,
                {"Set-Cookie": "keep=1; Path=/; Max-Age=3600"},
                "<p>set</p>",
            ),
            "/short": (200, {"Set-Cookie": "short=1; Path=/; Max-Age=1"}, "<p>s</p>"),
            "/use": "<p>use</p>",
        },
    )

    class First(Spider):
        name = "jar"
        start_urls = [f"http://{host}/set", f"http://{host}/short"]

        def parse(self, response: Response) -> Any:
            return None

    class Second(First):
        start_urls = [f"http://{host}/use"]

    db = crawl_db("j")
    assert crawl(First, settings=FAST, db_path=db).exit_code == 0
    assert sorted(r[0] for r in rows(db, "SELECT name FROM cookies")) == ["keep", "short"]
    time.sleep(1.2)  # "short" expires
    assert crawl(Second, settings=FAST, db_path=db).exit_code == 0
    assert _cookies_seen(site, "/use") == ["keep=1"]


def test_sessions_keep_separate_jars(site: Site, crawl_db: Callable[[str], Path | str]) -> None:
    def login(path: str) -> Any:
        who = path.partition("=")[2]
        return 200, {"Set-Cookie": f"who={who}; Path=/"}, "<p>in</p>"

    host = site.add_host("127.0.0.2", {"/login": login, "*": "<p>page</p>"})

    class S(Spider):
        name = "sessions"

        def start_requests(self) -> Any:
            for who in ("buyer", "seller"):
                yield Request(f"http://{host}/login?as={who}", session=who, callback=self.after)

        def after(self, response: Response) -> Any:
            who = response.url.rpartition("=")[2]
            yield Request(f"http://{host}/page-{who}", session=who)
            yield Request(f"http://{host}/anon-{who}")

    db = crawl_db("s")
    assert crawl(S, settings=FAST, db_path=db).exit_code == 0
    assert _cookies_seen(site, "/page-buyer") == ["who=buyer"]
    assert _cookies_seen(site, "/page-seller") == ["who=seller"]
    assert _cookies_seen(site, "/anon-buyer") == [""]
    assert sorted(rows(db, "SELECT session, value FROM cookies")) == [
        ("buyer", "buyer"),
        ("seller", "seller"),
    ]


def test_cookies_off_sends_and_keeps_nothing(site: Site, tmp_path: Path) -> None:
    host = site.add_host(
        "127.0.0.2",
        {"/a": (200, {"Set-Cookie": "sid=1; Path=/"}, '<a href="/b">b</a>'), "/b": "<p>b</p>"},
    )

    class S(Spider):
        name = "off"
        start_urls = [f"http://{host}/a"]

        def parse(self, response: Response) -> Any:
            yield from response.links()

    db = tmp_path / "o.db"
    settings = Settings(workers=1, timeout=5, retries=0, robots=False, cookies=False)
    assert crawl(S, settings=settings, db_path=db).exit_code == 0
    assert _cookies_seen(site, "/b") == [""]
    assert rows(db, "SELECT count(*) FROM cookies") == [(0,)]


def test_cookie_values_never_in_logs_settings_or_errors(
    site: Site, crawl_db: Callable[[str], Path | str], caplog: pytest.LogCaptureFixture
) -> None:
    host = site.add_host(
        "127.0.0.2",
        {
            "/a": (200, {"Set-Cookie": f"sid={SECRET}; Path=/"}, '<a href="/boom">x</a>'),
            "/boom": "<p>boom</p>",
        },
    )

    class S(Spider):
        name = "secret"
        start_urls = [f"http://{host}/a"]

        def parse(self, response: Response) -> Any:
            if response.url.endswith("/boom"):
                raise RuntimeError(f"failed on {response.request!r} {response.meta!r}")
            yield Request(response.urljoin("/boom"), cookies={"token": SECRET})
            yield Request(f"http://{host}/missing", cookies={"token": SECRET})

    db = crawl_db("x")
    caplog.set_level(logging.DEBUG)
    crawl(S, settings=FAST, db_path=db)
    assert _cookies_seen(site, "/boom") == [f"sid={SECRET}; token={SECRET}"]
    errors = rows(db, "SELECT url, kind, message, traceback FROM errors")
    assert any(kind == "callback" for _, kind, _, _ in errors)
    assert SECRET not in repr(errors)
    assert SECRET not in repr(rows(db, "SELECT settings, stats FROM runs"))
    assert SECRET not in caplog.text


def _two_hosts(site: Site, names: tuple[str, str], routes: tuple[dict[str, Any], ...]) -> Any:
    """Serve ``names`` on 127.0.0.2 and 127.0.0.3 (pinned with ``resolve``), with ports chosen
    so that different workers of 2 own them: with ``per_host`` 1 a host's one slot stays with
    its owner, so the two hosts are fetched and parsed in different processes."""
    first = f"{names[0]}:{site.add_host('127.0.0.2', routes[0]).rpartition(':')[2]}"
    for _ in range(20):
        second = f"{names[1]}:{site.add_host('127.0.0.3', routes[1]).rpartition(':')[2]}"
        if owner_of(url_host(f"http://{first}/"), 2) != owner_of(url_host(f"http://{second}/"), 2):
            break
    assert owner_of(url_host(f"http://{first}/"), 2) != owner_of(url_host(f"http://{second}/"), 2)
    return first, second, {names[0]: "127.0.0.2", names[1]: "127.0.0.3"}


class PidSpider(Spider):
    """Follows every link and records which worker process parsed each page."""

    name = "pids"
    allowed_domains = ["example.test", "co.uk"]

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "pid": os.getpid()}
        yield from response.links()


ONE_SLOT = Settings(workers=2, per_host=1, timeout=5, retries=0, robots=False)


def test_domain_cookie_of_www_reaches_shop_in_another_worker(site: Site, tmp_path: Path) -> None:
    www_routes: dict[str, Any] = {}
    www, shop, pins = _two_hosts(
        site, ("www.example.test", "shop.example.test"), (www_routes, {"/cart": "<p>cart</p>"})
    )
    www_routes["/"] = (
        200,
        {"Set-Cookie": f"sid={SECRET}; Domain=example.test; Path=/; HttpOnly"},
        f'<a href="http://{shop}/cart">cart</a><a href="/again">again</a>',
    )
    www_routes["/again"] = "<p>again</p>"
    db = tmp_path / "site.db"
    result = crawl(
        PidSpider,
        settings=ONE_SLOT.replace(resolve=pins),
        db_path=db,
        spider_kwargs={"start_urls": [f"http://{www}/"]},
    )
    assert result.exit_code == 0, result
    assert [h["host"] for _, p, h, _ in site.requests if p == "/cart"] == [shop]
    assert _cookies_seen(site, "/") == [""]
    assert _cookies_seen(site, "/cart") == [f"sid={SECRET}"]
    assert _cookies_seen(site, "/again") == [f"sid={SECRET}"]
    pids = dict(rows(db, "SELECT url, pid FROM items"))
    assert len(pids) == 3
    # The two hosts were parsed by two different worker processes.
    assert pids[f"http://{www}/"] != pids[f"http://{shop}/cart"]
    [(domain,)] = rows(db, "SELECT domain FROM cookies")
    assert domain.lstrip(".") == "example.test"


def test_public_suffix_domain_cookie_is_refused_in_a_crawl(site: Site, tmp_path: Path) -> None:
    www_routes: dict[str, Any] = {}
    www, other, pins = _two_hosts(
        site, ("www.shop.co.uk", "other.co.uk"), (www_routes, {"*": "<p>other</p>"})
    )
    www_routes["/"] = (
        200,
        {"Set-Cookie": "wide=1; Domain=.co.uk; Path=/"},
        f'<a href="http://{other}/cart">other</a><a href="/next">next</a>',
    )
    www_routes["/next"] = (
        200,
        {"Set-Cookie": "mine=1; Domain=shop.co.uk; Path=/"},
        f'<a href="http://{other}/cart?2">other</a><a href="/last">last</a>',
    )
    www_routes["/last"] = "<p>last</p>"
    db = tmp_path / "psl.db"
    result = crawl(
        PidSpider,
        settings=ONE_SLOT.replace(resolve=pins),
        db_path=db,
        spider_kwargs={"start_urls": [f"http://{www}/"]},
    )
    assert result.exit_code == 0, result
    assert _cookies_seen(site, "/next") == [""]  # Domain=.co.uk was refused, not kept
    assert _cookies_seen(site, "/last") == ["mine=1"]  # the registrable domain is fine
    # Neither reached another site under the public suffix.
    assert _cookies_seen(site, "/cart") == [""]
    assert _cookies_seen(site, "/cart?2") == [""]
    assert rows(db, "SELECT name FROM cookies") == [("mine",)]
