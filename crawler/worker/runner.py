"""One Job fetched and answered: :class:`JobRunner`, everything a worker process does but the
pipes.

``JobRunner.process(job)`` fetches through one ``HTTPConnectionPool(maxsize=per_host,
block=True)`` per owned origin (``redirect=False``; stored validators are sent as
``If-None-Match`` / ``If-Modified-Since``), reads the body under its limits
(``crawler.worker.body``), applies the retry and redirect rules (``crawler.worker.retry``),
recognises an unchanged page, and hands a 2xx to the spider's callback
(``crawler.worker.callbacks``) or to a reserved one (``crawler.worker.reserved``). It never
raises for anything the web does: every Job gets exactly one Outcome. Usable in-process, with an
injected clock and RNG, which is how the tests drive it; ``crawler.worker.process`` runs it in a
process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from crawler.cookies import LOGIN_META, LOGIN_PRIORITY
from crawler.http import (
    EmptyPoolError,
    HTTPError,
    ProxyConfig,
    ProxyError,
    Retry,
    Timeout,
    connection_from_url,
)
from crawler.http.util.redirect import next_hop
from crawler.messages import (
    ROBOTS_CALLBACK,
    SITEMAP_CALLBACK,
    Failure,
    Job,
    NewRequest,
    Outcome,
)
from crawler.settings import Settings
from crawler.sitemap import MAX_SITEMAP_SIZE
from crawler.spider import Response, Spider
from crawler.urls import Admitted, Refusal, Refused, admit, fingerprint
from crawler.worker import fence
from crawler.worker import retry as fetch
from crawler.worker.body import BodyDeadline, past_deadline, read_body
from crawler.worker.callbacks import CallbackRunner, fresh_fingerprint
from crawler.worker.conditional import conditional_headers, is_unchanged
from crawler.worker.outcomes import done, failed, lease_lost, make_page, retry
from crawler.worker.proxies import MAX_ROTATIONS, ProxyRotation, proxy_failed
from crawler.worker.reserved import robots_outcome, sitemap_outcome

__all__ = ["JobRunner", "is_textual"]

# Pools (one per origin and proxy) a worker keeps; see JobRunner._pool.
MAX_POOLS = 256
_TEXT_MARKERS = ("html", "xml", "text", "json", "javascript")


def is_textual(content_type: str | None) -> bool:
    if not content_type:
        return True  # unlabelled bodies are usually HTML; the parser copes with the rest
    ct = content_type.lower()
    return any(marker in ct for marker in _TEXT_MARKERS)


class JobRunner:
    """Fetch, decide, parse: everything a worker process does for one Job, minus the pipes."""

    def __init__(
        self,
        spider: Spider,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        body_deadline: float | None = None,
    ) -> None:
        self.spider = spider
        self.settings = settings
        self.clock = clock
        self.rand = rand
        self.user_agent = spider.user_agent or settings.agent
        # A whole response may take this long; a server trickling one byte a second must not
        # hold a thread (and a slot of its host) forever. The pool enforces it on every socket
        # wait (Timeout.total); read_body also checks it between pieces of the body.
        self.body_deadline = (
            max(60.0, settings.timeout * 4) if body_deadline is None else body_deadline
        )
        self.timeout = Timeout(
            connect=settings.timeout, read=settings.timeout, total=self.body_deadline
        )
        self._pools: OrderedDict[tuple[str, str, str | None], Any] = OrderedDict()
        self._pools_lock = threading.Lock()
        self.proxies = ProxyRotation(settings.proxy)
        self.resolve = dict(settings.resolve)
        self.callbacks = CallbackRunner(spider, settings)
        # A spider that wants its callback run on unchanged pages needs their bodies, so its
        # pages are fetched without validators (sitemaps still ask conditionally).
        self.parse_unchanged = bool(spider.parse_unchanged)
        self.sitemap_callback = (
            spider.sitemap_callback if isinstance(spider.sitemap_callback, str) else None
        )
        self.cookies = settings.cookies
        # Only a spider that defines logged_in() has its responses checked.
        self.checks_login = type(spider).logged_in is not Spider.logged_in

    def _session_ended(self, job: Job, status: int, headers: Any, body: bytes) -> bool:
        """Does the spider's ``logged_in`` say this response shows a logged-out session?"""
        if job.meta and LOGIN_META in job.meta:
            return False  # the login's own pages are logged out by nature
        response = Response(job.url, status, headers, body, depth=job.depth, meta=job.meta)
        try:
            return not self.spider.logged_in(response)
        except Exception:  # a broken check must not stop the crawl: count it as logged in
            return False

    def __repr__(self) -> str:
        return f"<JobRunner {type(self.spider).__name__} {len(self._pools)} pools>"

    # -- pools -------------------------------------------------------------------------------

    def _pool(self, url: str, host: str, proxy: str | None = None) -> Any:
        """The pool for ``url``'s origin, through ``proxy`` if given (one pool per pair).

        At most ``MAX_POOLS`` are kept, the least recently used retired first (its idle
        sockets close now, a busy one when its response is done). A broad crawl touches
        tens of thousands of hosts: with a pool for each, kept with its idle keep-alive
        sockets, two workers held 25,721 open files and 1.9 GB at 20,000 hosts
        (``benchmarks/broad.py``), past the usual limit of 1,024 files a process."""
        scheme = url[: url.find(":")]
        key = (scheme, host, proxy)
        evicted = None
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            extra: dict[str, Any] = {}
            if self.resolve:
                extra["resolve"] = self.resolve
            if proxy is not None:
                extra["proxy"] = ProxyConfig.from_url(proxy)
            pool = connection_from_url(
                url,
                maxsize=self.settings.per_host,
                block=True,
                timeout=self.timeout,
                headers={"User-Agent": self.user_agent},
                retries=Retry(0, redirect=False),
                **extra,
            )
            self._pools[key] = pool
            if len(self._pools) > MAX_POOLS:
                _, evicted = self._pools.popitem(last=False)
        if evicted is not None:
            evicted._retire()
        return pool

    def _proxy_for(self, job: Job, skip: tuple[str, ...]) -> str | None:
        """The request's own proxy (``Request(proxy=...)``), else the host's from the setting."""
        own = job.meta.get("proxy") if job.meta else None
        if isinstance(own, str) and own:
            return self.proxies.full_url(own)
        return self.proxies.pick(job.host, self.clock(), skip)

    def _open(self, job: Job, limit: int) -> Any:
        """Send ``job`` and return the streamed response (None: not sent, its lease deadline
        had passed: ``crawler.worker.fence``); a failing proxy is rotated out.

        Only a failure of the proxy itself (:func:`proxy_failed`) moves the request to another
        proxy, at most ``MAX_ROTATIONS`` times and never to one it already tried; every other
        error, and every status (429 included), is the target's and goes to the usual retry
        rules.
        """
        tried: tuple[str, ...] = ()
        while True:
            proxy = self._proxy_for(job, tried) if self.proxies or job.meta else None
            if fence.past(job):
                return None
            try:
                resp = self._pool(job.url, job.host, proxy).urlopen(
                    job.method,
                    job.url,
                    body=job.body,
                    headers=self._request_headers(job) or None,
                    retries=Retry(0, redirect=False),
                    redirect=False,
                    preload_content=False,
                    decode_content=True,
                    # The pool's decoder stops at this cap: one read of a compression bomb
                    # can never inflate past the body limit (the pool's default is 100 MB).
                    max_decoded_size=limit + 1,
                    pool_timeout=fence.slot_wait(job),
                )
            except HTTPError as exc:
                failure = None if proxy is None else proxy_failed(exc, proxy, job.url)
                if proxy is None or failure is None:
                    raise
                self.proxies.failed(proxy, self.clock())
                tried += (proxy,)
                own = job.meta.get("proxy") if job.meta else None
                if own or len(tried) > MAX_ROTATIONS or len(tried) >= len(self.proxies.proxies):
                    if failure is exc or failure is getattr(exc, "reason", None):
                        raise
                    # A dropped connection is reported as the proxy's failure (the errors
                    # row names the proxy, never its credentials), then the retry rules.
                    raise failure from exc
                continue
            if proxy is not None:
                self.proxies.succeeded(proxy)
            return resp

    def close(self) -> None:
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            with contextlib.suppress(Exception):
                pool.close()

    # -- one job -----------------------------------------------------------------------------

    def process(self, job: Job) -> Outcome:
        """Fetch ``job`` and answer with its Outcome. Never raises for anything the web does."""
        started = self.clock()
        try:
            return self._process(job, started)
        except Exception as exc:  # a bug of ours: report it as a row, keep the worker alive
            return failed(job, Failure(job.url, "internal", repr(exc), traceback.format_exc()))

    def _skips_unchanged(self, job: Job) -> bool:
        """Is an unchanged answer to ``job`` recorded without running its callback?"""
        return job.callback == SITEMAP_CALLBACK or not self.parse_unchanged

    def _request_headers(self, job: Job) -> dict[str, str]:
        headers = dict(job.headers)
        if self._skips_unchanged(job):
            # Validators came from a server: conditional_headers drops unusable ones (CR/LF).
            headers.update(conditional_headers(job.etag, job.last_modified))
        if job.cookie is not None:
            headers["Cookie"] = job.cookie  # computed by the engine from its jar
        return headers

    def _process(self, job: Job, started: float) -> Outcome:
        settings = self.settings
        if job.callback == ROBOTS_CALLBACK:
            if fence.past(job):
                return lease_lost(job)
            return robots_outcome(
                job,
                self._pool(job.url, job.host, self._proxy_for(job, ()) if self.proxies else None),
                self.user_agent,
                self.timeout,
                settings.crawl_delay_max,
                self.clock,
            )
        limit = settings.max_body_size
        if job.callback == SITEMAP_CALLBACK:
            limit = max(limit, MAX_SITEMAP_SIZE)  # the protocol's own cap
        try:
            resp = self._open(job, limit)
        except HTTPError as exc:
            if isinstance(exc, EmptyPoolError) and fence.past(job):
                return lease_lost(job)  # waited for a slot until the deadline: never sent
            return self._fetch_error(job, self._past_deadline(exc, started, "response"))
        if resp is None:
            return lease_lost(job)
        try:
            body, cut = read_body(resp, started, limit, self.body_deadline, self.clock)
        except HTTPError as exc:
            with contextlib.suppress(Exception):
                resp.close()
            return self._fetch_error(job, self._past_deadline(exc, started, "body"))
        finally:
            if resp is not None:
                with contextlib.suppress(Exception):
                    resp.release_conn()
        outcome = self._answer(job, resp.status, resp.headers, body, cut, started)
        if self.cookies:
            set_cookies = resp.headers.getlist("Set-Cookie")
            if set_cookies:
                # Back to the engine's jar, in order (crawler.cookies).
                outcome = dataclasses.replace(outcome, set_cookies=tuple(set_cookies))
        return outcome

    def _answer(
        self, job: Job, status: int, headers: Any, body: bytes, cut: str | None, started: float
    ) -> Outcome:
        """The Outcome for a response that was read (``cut``: why its body was cut short)."""
        settings = self.settings
        store_body = settings.store_body
        now = self.clock()
        content_type = headers.get("Content-Type")
        if (
            self.checks_login
            and job.callback != SITEMAP_CALLBACK
            and self._session_ended(job, status, headers, body)
        ):
            if job.attempt >= max(1, settings.retries):
                reason = "logged_in() is false for this response, also after a new login"
                return failed(job, Failure(job.url, "session", reason))
            # Fetched again once the engine has logged in again (an attempt is counted).
            return Outcome(job.fp, job.url, job.host, "retry", retry_at=now, session_ended=True)

        if status in fetch.RETRY_STATUSES:
            retry_after = fetch.parse_retry_after(headers.get("Retry-After"), now)
            decision = fetch.decide_retry(
                job.attempt,
                settings.retries,
                now,
                self.rand,
                status=status,
                retry_after=retry_after,
            )
            if not decision.give_up:
                return retry(job, decision, status=status)
            page = make_page(
                job, status, headers, content_type, body, None, started, now, store_body
            )
            failure = Failure(job.url, "http", f"HTTP {status} after {job.attempt} retries")
            return Outcome(
                job.fp,
                job.url,
                job.host,
                "failed",
                page=page,
                failures=(failure,),
                host_not_before=decision.host_not_before,
            )

        failures: list[Failure] = []
        if cut is not None:
            failures.append(Failure(job.url, "too_large", cut))

        if status in fetch.REDIRECT_STATUSES:
            return self._redirect(job, status, headers, content_type, body, started, now, failures)

        page = make_page(job, status, headers, content_type, body, None, started, now, store_body)
        if status == 304 or (
            self._skips_unchanged(job) and is_unchanged(status, page.content_hash, job.content_hash)
        ):
            # Unchanged: the stored page and its items stay; no callback, no links, and the
            # body does not travel to the parent (it is stored already).
            return done(job, dataclasses.replace(page, body=None), failures, stats={"unchanged": 1})
        if job.callback == SITEMAP_CALLBACK:
            if not 200 <= status < 300:
                return done(job, page, failures)
            return sitemap_outcome(
                job,
                body,
                page,
                failures,
                cut,
                max_url_length=settings.max_url_length,
                allows=self.callbacks.allows,
                callback=self.sitemap_callback,
            )
        handled = self.spider.handle_httpstatus_list
        if not (200 <= status < 300 or status in handled):
            return done(job, page, failures)
        callback_name = job.callback or "parse"
        if callback_name == "parse" and not is_textual(content_type):
            # A binary body reached through a link: store it, do not parse it.
            return done(job, page, failures)
        return self.callbacks.run(job, status, headers, body, page, failures)

    def _past_deadline(self, exc: HTTPError, started: float, what: str) -> HTTPError:
        return past_deadline(exc, started, self.body_deadline, self.clock, what)

    def _fetch_error(self, job: Job, exc: BaseException) -> Outcome:
        now = self.clock()
        kind = "timeout" if isinstance(exc, BodyDeadline) else fetch.error_kind(exc)
        if isinstance(exc, ProxyError) or isinstance(getattr(exc, "reason", None), ProxyError):
            # The proxy failed, not the site: its own kind, so that the site's autothrottle
            # (which cuts on "connect") is not slowed down by a dead proxy.
            kind = "proxy"
        message = str(exc) or type(exc).__name__
        if fetch.is_retryable_error(exc) and not isinstance(exc, BodyDeadline):
            decision = fetch.decide_retry(job.attempt, self.settings.retries, now, self.rand)
            if not decision.give_up:
                return retry(job, decision, error=kind)
        return failed(job, Failure(job.url, kind, message))

    def _redirect(
        self,
        job: Job,
        status: int,
        headers: Any,
        content_type: str | None,
        body: bytes,
        started: float,
        now: float,
        failures: list[Failure],
    ) -> Outcome:
        store_body = self.settings.store_body
        raw = headers.get("Location")
        target = fetch.redirect_target(job.url, raw)
        # Redirects are followed wherever they lead: no offsite filter.
        admitted = (
            None if target is None else admit(target, max_url_length=self.settings.max_url_length)
        )
        # The page row records the canonical target even when it is too long to follow.
        canonical = None if admitted is None else admitted.url
        page = make_page(
            job, status, headers, content_type, body, canonical, started, now, store_body
        )
        hops = (*job.redirect_urls, job.url)
        reason = self._not_followed(raw, admitted, hops)
        if not isinstance(admitted, Admitted) or reason is not None:
            if reason is not None:
                failures.append(Failure(job.url, "redirect", reason))
            return done(job, page, failures)
        # The same rule as PoolManager's: credentials stay with their origin, a hop that
        # becomes GET loses its body and Content-* headers.
        hop = next_hop(status, job.method, job.headers, job.url, admitted.url)
        body_out = job.body if hop.keeps_body else None
        # A login's hops are never taken for duplicates of an earlier run's pages.
        in_login = job.meta is not None and LOGIN_META in job.meta
        request = NewRequest(
            # The hop's own request: its method and body are known only now, from next_hop,
            # which needs the canonical target (admitted.fp is for a plain GET).
            fp=fresh_fingerprint() if in_login else fingerprint(admitted.url, hop.method, body_out),
            dont_filter=in_login,
            priority=LOGIN_PRIORITY if in_login else 0,
            url=admitted.url,
            host=admitted.host,
            method=hop.method,
            headers=hop.headers,
            body=body_out,
            callback=job.callback,
            meta=job.meta,
            depth=job.depth,
            redirect_urls=hops,
        )
        return done(job, page, failures, requests=(request,), stats={"redirects": 1})

    def _not_followed(
        self, raw: str | None, target: Admitted | Refused | None, hops: tuple[str, ...]
    ) -> str | None:
        """Why a redirect is not followed (``None`` also for a 3xx without ``Location``)."""
        if target is None or (isinstance(target, Refused) and target.reason is Refusal.INVALID):
            return None if raw is None else f"not followed: {raw[:200]!r}"
        if len(hops) > self.settings.max_redirects:
            return f"more than {self.settings.max_redirects} redirects"
        if isinstance(target, Refused):  # TOO_LONG: admit() was given no offsite filter
            return "target URL longer than max_url_length"
        return None
