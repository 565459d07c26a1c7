"""The login pattern end to end: a loopback site with a CSRF-protected login form and pages
that need the session. The first run logs in (Spider.login) before its start requests; the
second reuses the stored session without logging in; a session the site has forgotten makes
the crawl log in again, once. On both backends (``crawl_db``): the session lives in the
``cookies`` table."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from crawler.engine import crawl
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider
from tests.kit.crawl import rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SETTINGS = Settings(workers=2, timeout=5, retries=1, robots=False)


class LoginSite(ThreadingHTTPServer):
    """``/login`` (GET: a form whose CSRF token is bound to a ``pre`` cookie; POST: checks
    both and the password, then 302 to ``/account`` with a ``sid`` session cookie);
    ``/account`` and ``/page/N`` need a live ``sid``, else 302 to ``/login``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.2", 0), _Handler)
        self.csrf: dict[str, str] = {}  # pre cookie -> token
        self.sessions: set[str] = set()
        self.hits: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.pages = 2
        self.first_session_uses: int | None = None  # the first session ends after this many
        self.uses: Counter[str] = Counter()
        self.first_sid: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.2:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoginSite

    def _cookies(self) -> dict[str, str]:
        raw = self.headers.get("Cookie", "")
        return dict(p.split("=", 1) for p in raw.split("; ") if "=" in p)

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        site = self.server
        with site.lock:
            site.hits[(self.command, self.path)] += 1
        cookies = self._cookies()
        if self.path == "/login":
            pre, token = secrets.token_hex(8), secrets.token_hex(8)
            with site.lock:
                site.csrf[pre] = token
            form = (
                '<form method="post" action="/login">'
                f'<input type="hidden" name="csrf" value="{token}">'
                '<input name="user"><input type="password" name="password">'
                '<input type="submit" name="go" value="Log in"></form>'
            )
            self._send(200, form, {"Set-Cookie": f"pre={pre}; Path=/; HttpOnly"})
            return
        sid = cookies.get("sid", "")
        with site.lock:
            site.uses[sid] += 1
            limit = site.first_session_uses
            if sid == site.first_sid and limit is not None and site.uses[sid] > limit:
                site.sessions.discard(sid)
        if sid not in site.sessions:
            self._send(302, "", {"Location": "/login"})
            return
        if self.path == "/account":
            links = "".join(f'<a href="/page/{n}">{n}</a>' for n in range(1, site.pages + 1))
            self._send(200, f"<h1>account</h1>{links}")
        elif self.path.startswith("/page/"):
            self._send(200, f"<h1>page {self.path[6:]}</h1>")
        else:
            self._send(404, "no")

    def do_POST(self) -> None:
        site = self.server
        with site.lock:
            site.hits[(self.command, self.path)] += 1
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        pre = self._cookies().get("pre", "")
        with site.lock:
            token_ok = pre in site.csrf and site.csrf.pop(pre) == form.get("csrf")
        if not token_ok or form.get("user") != "ann" or form.get("password") != "pw":
            self._send(403, "bad login")
            return
        sid = secrets.token_hex(8)
        with site.lock:
            site.sessions.add(sid)
            site.first_sid = site.first_sid or sid
        self._send(302, "", {"Location": "/account", "Set-Cookie": f"sid={sid}; Path=/"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def login_site() -> Iterator[LoginSite]:
    site = LoginSite()
    thread = threading.Thread(target=site.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()
        thread.join(2)


def make_spider(base: str) -> type[Spider]:
    class Members(Spider):
        name = "members"
        start_urls = [f"{base}/account"]

        def login(self) -> Any:
            yield Request(f"{base}/login", callback=self.fill_login)

        def fill_login(self, response: Response) -> Any:
            yield response.form(formdata={"user": "ann", "password": "pw"}, callback="landed")

        def landed(self, response: Response) -> Any:
            return None

        def logged_in(self, response: Response) -> bool:
            return not (response.status == 302 and response.headers.get("Location", "") == "/login")

        def parse(self, response: Response) -> Any:
            yield {"title": response.css("h1::text").get()}
            yield from response.links()

    return Members


def titles(db: Path | str) -> list[str]:
    return sorted(r[0] for r in rows(db, "SELECT title FROM items"))


def test_login_then_crawl_then_reuse_stored_session(
    login_site: LoginSite, crawl_db: Callable[[str], Path | str]
) -> None:
    spider = make_spider(login_site.base)
    db = crawl_db("members")
    first = crawl(spider, settings=SETTINGS, db_path=db)
    assert first.exit_code == 0, first
    assert login_site.hits[("POST", "/login")] == 1
    assert titles(db) == ["account", "page 1", "page 2"]
    # Only the login's own /account hop ever met a logged-out answer: none of the crawl's.
    assert rows(db, "SELECT url FROM pages WHERE status = 302 AND url LIKE '%/account'") == []
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    assert [r[0] for r in rows(db, "SELECT name FROM cookies ORDER BY name")] == ["pre", "sid"]

    second = crawl(spider, settings=SETTINGS, db_path=db)
    assert second.exit_code == 0, second
    assert login_site.hits[("POST", "/login")] == 1  # no new login
    assert login_site.hits[("GET", "/login")] == 1
    assert login_site.hits[("GET", "/account")] == 3  # the login hop, run 1, run 2
    assert rows(db, "SELECT status FROM pages WHERE url LIKE '%/account'") == [(200,)]


def test_ended_session_logs_in_again_once(
    login_site: LoginSite, crawl_db: Callable[[str], Path | str]
) -> None:
    spider = make_spider(login_site.base)
    db = crawl_db("members")
    assert crawl(spider, settings=SETTINGS, db_path=db).exit_code == 0
    login_site.sessions.clear()  # the site forgets every session between the runs

    second = crawl(spider, settings=SETTINGS, db_path=db)
    assert second.exit_code == 0, second
    assert login_site.hits[("POST", "/login")] == 2
    assert rows(db, "SELECT status FROM pages WHERE url LIKE '%/account'") == [(200,)]
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    live = login_site.sessions
    ((sid,),) = rows(db, "SELECT value FROM cookies WHERE name = 'sid'")
    assert sid in live


def test_a_login_that_never_works_fails_its_pages(
    login_site: LoginSite, crawl_db: Callable[[str], Path | str]
) -> None:
    class WrongPassword(make_spider(login_site.base)):  # type: ignore[misc]
        def fill_login(self, response: Response) -> Any:
            yield response.form(formdata={"user": "ann", "password": "no"}, callback="landed")

    db = crawl_db("wrong")
    result = crawl(WrongPassword, settings=SETTINGS, db_path=db)
    assert login_site.hits[("POST", "/login")] == 2  # the login, and one more: no loop
    kinds = rows(db, "SELECT kind FROM errors WHERE url LIKE '%/account'")
    assert kinds == [("session",)]
    assert result.exit_code == 0


def test_session_ending_mid_crawl_logs_in_again_ahead_of_the_queue(
    login_site: LoginSite, crawl_db: Callable[[str], Path | str]
) -> None:
    # 40 pages queued on the one host when the session dies: the new login must jump the
    # queue (the Jobs taken while it runs are put back), then every page is crawled.
    login_site.pages = 40
    login_site.first_session_uses = 6
    db = crawl_db("mid")
    result = crawl(make_spider(login_site.base), settings=SETTINGS, db_path=db)
    assert result.exit_code == 0, result
    assert login_site.hits[("POST", "/login")] == 2
    # (The "account" item may be gone: the new login's own hop to /account stored that page
    # again, and a page's items are replaced with it.)
    assert [t for t in titles(db) if t.startswith("page")] == sorted(
        f"page {n}" for n in range(1, 41)
    )
    assert rows(db, "SELECT count(*) FROM errors") == [(0,)]
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 302 AND url LIKE '%/page/%'") == [
        (0,)
    ]
