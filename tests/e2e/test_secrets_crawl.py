"""Secrets stay secret in a whole crawl: cookie values and proxy credentials never reach a log
line (the parent's, or a worker process's output), ``runs.settings``, ``runs.stats`` or an
``errors`` row, although the crawl goes through authenticated proxies (one of them dead),
sends and receives cookies, and fails on purpose in several ways. On both backends
(``crawl_db``); the cookie values are in the ``cookies`` table, where they belong."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider
from crawler.urls import url_host
from crawler.worker.proxies import ProxyRotation
from tests.kit.crawl import rows, tables
from tests.kit.proxies import http_proxy
from tests.kit.site import Site

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

COOKIE = "ck-Secret-9041"
LIVE_PW, DEAD_PW = "livepw-5512", "deadpw-6623"
SECRETS = (COOKIE, LIVE_PW, DEAD_PW)


def test_cookie_values_and_proxy_credentials_reach_no_log_settings_or_error_row(
    site: Site,
    crawl_db: Callable[[str], Path | str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    host = site.add_host(
        "127.0.0.2",
        {
            "/a": (
                200,
                {"Set-Cookie": f"sid={COOKIE}; Path=/; HttpOnly"},
                '<a href="/boom">boom</a><a href="/gone">gone</a>',
            ),
            "/boom": "<p>boom</p>",
            "/gone": (404, {}, "gone"),
        },
    )
    with http_proxy(fail=True) as dead, http_proxy(auth=("ann", LIVE_PW)) as live:
        proxies = [dead.url(("ann", DEAD_PW)), live.url(("ann", LIVE_PW))]
        if ProxyRotation(tuple(proxies)).pick(url_host(f"http://{host}/"), 0.0) != proxies[0]:
            proxies.reverse()  # the host's own proxy is the dead one: it is rotated out
        dead_bare = f"http://127.0.0.1:{dead.port}"

        class Secretive(Spider):
            name = "secretive"

            def start_requests(self) -> Any:
                yield Request(f"http://{host}/a", callback=self.parse)
                # Through the dead proxy only (a request's own proxy is never rotated).
                yield Request(f"http://{host}/own", proxy=dead_bare, cookies={"k": COOKIE})

            def parse(self, response: Response) -> Any:
                if response.url.endswith("/boom"):
                    raise RuntimeError(f"failed on {response.request!r} {response.meta!r}")
                for link in response.links():
                    yield Request(link, cookies={"token": COOKIE})

        db = crawl_db("secrets")
        caplog.set_level(logging.DEBUG)
        settings = Settings(workers=2, timeout=5, retries=0, robots=False, proxy=proxies)
        result = crawl(Secretive, settings=settings, db_path=db)
        assert result.exit_code == 0, result
        assert live.seen and all(s.headers.get("proxy-authorization") for s in live.seen)

    # The secrets did travel where they belong: cookies to the site, through the live proxy.
    boom = [h for _, p, h, _ in site.requests if p == "/boom"]
    assert boom and boom[0]["cookie"] == f"sid={COOKIE}; token={COOKIE}"
    errors = rows(db, "SELECT url, kind, message, traceback FROM errors")
    kinds = sorted(kind for _, kind, _, _ in errors)
    assert "callback" in kinds and "proxy" in kinds, errors
    [(message,)] = rows(db, "SELECT message FROM errors WHERE kind = 'proxy'")
    assert f"127.0.0.1:{dead.port}" in message  # it names the proxy, without credentials
    stored = repr(rows(db, "SELECT settings, stats FROM runs"))
    assert "***@127.0.0.1" in stored
    # Every table the backend has (on PostgreSQL also nodes.stats, host_leases): the proxy
    # passwords are in none, and a cookie value only where cookies belong: the jar, a queued
    # request's own cookies (kept to resume it) and a stored response's Set-Cookie header.
    for table in tables(db):
        kept = (LIVE_PW, DEAD_PW) if table in ("cookies", "frontier", "pages") else SECRETS
        for row in rows(db, f"SELECT * FROM {table}"):
            for secret in kept:
                assert secret not in repr(row), (table, secret, row)
    out, err = capfd.readouterr()
    for secret in SECRETS:
        assert secret not in repr(errors), secret
        assert secret not in stored, secret
        assert secret not in caplog.text, secret
        assert secret not in out + err, secret
