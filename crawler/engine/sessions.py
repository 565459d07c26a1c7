"""The parent's side of cookies and logins: :class:`Sessions`.

How this works: the engine owns every cookie jar (``crawler.cookies``). At dispatch,
:meth:`Sessions.prepare` gives each Job the ``Cookie`` header of its URL, from the jar its
frontier row names (``Request(session=...)``), plus the request's own cookies; on record,
:meth:`Sessions.absorb` feeds every Outcome's ``Set-Cookie`` headers back into that jar,
*before* the batch is written, so a redirect target queued by the same batch is sent with the
cookies its 3xx set. The jars are saved to the store (``cookies`` table) whenever they change,
and loaded at the start of the next run (expired cookies dropped).

Logins (``Spider.login``): when the spider defines one and its jar holds no live cookie, the
login's requests are queued first and the start requests wait until the login is over: every
Request a login callback yields belongs to the login (``LOGIN_META``), and the login is over
when none of them is queued or in flight. While a login runs, other Jobs taken from the queue
are put back unsent. A response that the spider's ``logged_in`` refuses is retried, and the
first one in a run starts one new login.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from crawler.cookies import COOKIES_META, LOGIN_META, LOGIN_PRIORITY, SESSION_META
from crawler.messages import Job, NewRequest, Outcome
from crawler.spider import Spider
from crawler.worker.callbacks import fresh_fingerprint

if TYPE_CHECKING:
    from crawler.engine.cookiejars import CookieJars
    from crawler.store import CrawlStore

__all__ = ["Sessions", "wants_login"]

log = logging.getLogger("crawler")


def wants_login(spider: Spider) -> bool:
    """Does the spider define ``login()``?"""
    return type(spider).login is not Spider.login


class Sessions:
    """Cookie jars, the Cookie header of each Job, and the login state of one run."""

    def __init__(self, spider: Spider, store: CrawlStore, *, cookies: bool = True) -> None:
        self.spider = spider
        self.store = store
        self.cookies = cookies
        # Made by the first cookie (stored, set or sent), not here: most crawls never see one,
        # and crawler.engine.cookiejars loads http.cookiejar and with it urllib.request,
        # http.client and ssl (about 6 MB resident and 15 ms of imports).
        self._jars: CookieJars | None = None
        self.login_pending: set[int] = set()  # login requests queued or in flight
        self.relogged = False
        # fp -> session, for Jobs in flight that use a named session.
        self._in_flight: dict[int, str] = {}
        self.held = 0  # Jobs put back while a login ran

    def __repr__(self) -> str:
        jars = "no cookies" if self._jars is None else repr(self._jars)
        return f"<Sessions {jars} {len(self.login_pending)} login requests pending>"

    @property
    def jars(self) -> CookieJars:
        if self._jars is None:
            from crawler.engine.cookiejars import CookieJars

            self._jars = CookieJars()
        return self._jars

    @property
    def logging_in(self) -> bool:
        return bool(self.login_pending)

    def load(self, now: float) -> None:
        if self.cookies:
            rows = self.store.cookies()
            if rows:
                kept = self.jars.load(rows, now)
                log.debug("%d stored cookies restored", kept)

    def needs_login(self, now: float) -> bool:
        return wants_login(self.spider) and not (
            self._jars is not None and self._jars.has_live(None, now)
        )

    def login_requests(self, to_request: Callable[[object], NewRequest | None]) -> list[NewRequest]:
        """The spider's ``login()`` as frontier rows that are part of the login."""
        out = []
        for value in self.spider.login():
            request = to_request(value)
            if request is None:
                continue
            meta = dict(request.meta or {})
            meta[LOGIN_META] = True
            # Never a duplicate of the login page an earlier run (or login) fetched.
            request = replace(
                request,
                meta=meta,
                fp=fresh_fingerprint(),
                dont_filter=True,
                priority=max(request.priority, LOGIN_PRIORITY),
            )
            out.append(request)
            self.login_pending.add(request.fp)
        return out

    # -- dispatch -----------------------------------------------------------------------------

    def prepare(self, jobs: list[Job], hold: Callable[[list[int]], Any]) -> list[Job]:
        """The Jobs to send, each with its Cookie header; during a login the others are put
        back (``hold``)."""
        logging_in = bool(self.login_pending)
        if not self.cookies and not logging_in:
            return jobs
        out = []
        back = []
        for job in jobs:
            meta = job.meta
            session = None
            extra = None
            in_login = False
            if meta:
                session = meta.get(SESSION_META)
                extra = meta.get(COOKIES_META)
                in_login = LOGIN_META in meta
            if logging_in and not in_login:
                back.append(job.fp)
                continue
            if session is not None:
                self._in_flight[job.fp] = session
            if self.cookies and (self._jars or extra):
                cookie = self.jars.header(job.url, session, extra)
                if cookie is not None:
                    job = replace(job, cookie=cookie)
            out.append(job)
        if back:
            self.held += len(back)
            hold(back)
        return out

    # -- record -------------------------------------------------------------------------------

    def absorb(
        self, batch: Iterable[Outcome], to_request: Callable[[object], NewRequest | None]
    ) -> list[NewRequest]:
        """Take the batch's cookies and login progress; login requests to queue (a new login
        when a session ended)."""
        relogin: list[NewRequest] = []
        for o in batch:
            session = self._in_flight.pop(o.fp, None)
            if o.set_cookies and self.cookies:
                self.jars.absorb(o.url, o.set_cookies, session)
            if self.login_pending:
                for request in o.requests:
                    if request.meta and LOGIN_META in request.meta:
                        self.login_pending.add(request.fp)
                if o.state != "retry":
                    self.login_pending.discard(o.fp)
            if o.session_ended and not self.relogged and wants_login(self.spider):
                self.relogged = True
                log.info("%s: the session ended; logging in again", self.spider.name)
                if self._jars is not None:
                    self._jars.clear(session)
                relogin.extend(self.login_requests(to_request))
        if self._jars is not None and self._jars.dirty and self.cookies:
            self.store.put_cookies(self._jars.rows())
        return relogin

    def lost(self, fps: Iterable[int]) -> None:
        """Jobs requeued (their worker died): they stay part of a login, if they were."""
        for fp in fps:
            self._in_flight.pop(fp, None)
