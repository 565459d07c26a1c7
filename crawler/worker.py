"""A worker process: Jobs in, one Outcome per Job out.

How this works: the engine starts N worker processes (``multiprocess``, fork context) and talks
to each over two one-way pipes. Down the job pipe come pickled batches (``("jobs", [Job, ...])``
or ``("stop", None)``); up the result pipe go pickled lists of ``Outcome``. Each worker has
its own pair, so a worker killed in the middle of a write can corrupt only its own pipe, never
a queue shared with its siblings.

Inside the process the main thread reads the job pipe into a local queue, ``threads`` fetch
threads run :meth:`Worker.process` on each Job, and one sender thread batches finished
Outcomes into as few pipe writes as possible. A worker owns every host whose
``owner_of(host, N)`` is its index, and keeps one ``HTTPConnectionPool(maxsize=per_host,
block=True)`` per owned host. The engine never has more than ``per_host`` Jobs of one host in
flight, so a fetch thread never waits on a pool slot: the pool's blocking is a safety net.

:class:`Worker` holds everything but the process plumbing, so tests can drive it in-process.
The per-link path (canonicalize, filter, fingerprint, dedup within the page) runs here, on
every core, and leaves as compact ``(fp, url, host)`` tuples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import queue
import random
import secrets
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from crawler import fetch
from crawler.frontier import InvalidURL, canonicalize_url, fingerprint, url_host
from crawler.http import (
    BodyTooLargeError,
    HTTPError,
    MaxRetryError,
    ReadTimeoutError,
    Retry,
    Timeout,
    connection_from_url,
)
from crawler.messages import (
    ROBOTS_CALLBACK,
    SITEMAP_CALLBACK,
    Failure,
    Follow,
    Job,
    NewRequest,
    Outcome,
    Page,
)
from crawler.recrawl import conditional_headers, is_unchanged
from crawler.robots import fetch_robots
from crawler.settings import Settings
from crawler.sitemap import MAX_SITEMAP_SIZE, SitemapError, parse_sitemap
from crawler.spider import Request, Response, Spider, iter_results

__all__ = ["STOP", "Worker", "default_threads", "fresh_fingerprint", "worker_main"]

log = logging.getLogger("crawler.worker")

STOP = ("stop", None)
_CHUNK = 64 * 1024
_SEND_BATCH = 256  # outcomes per pipe write, at most
_HOST_CACHE_MAX = 100_000  # entries of the spider.allows() cache before it is cleared
_TEXT_MARKERS = ("html", "xml", "text", "json", "javascript")
# A read timeout this close to the whole-response deadline is the pool enforcing that deadline.
_DEADLINE_SLACK = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def fresh_fingerprint() -> int:
    """A random signed 64-bit fingerprint, for a ``dont_filter`` request: never a duplicate."""
    return secrets.randbits(64) - (1 << 63)


def default_threads(settings: Settings) -> int:
    """Fetch threads per worker: a slow host holds at most ``per_host`` of them (the engine
    never sends more), which leaves four for the worker's other hosts. More threads mostly add
    GIL contention and resident memory."""
    return min(16, settings.per_host + 4)


def is_textual(content_type: str | None) -> bool:
    if not content_type:
        return True  # unlabelled bodies are usually HTML; the parser copes with the rest
    ct = content_type.lower()
    return any(marker in ct for marker in _TEXT_MARKERS)


def _headers_json(headers: Any) -> str:
    return json.dumps(dict(headers.itermerged()), ensure_ascii=False)


class Worker:
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
        self.user_agent = getattr(spider, "user_agent", None) or settings.user_agent
        # A whole response may take this long; a server trickling one byte a second must not
        # hold a thread (and a slot of its host) forever. The pool enforces it on every socket
        # wait (Timeout.total); _read_body also checks it between pieces of the body.
        self.body_deadline = (
            max(60.0, settings.timeout * 4) if body_deadline is None else body_deadline
        )
        self.timeout = Timeout(
            connect=settings.timeout, read=settings.timeout, total=self.body_deadline
        )
        self._pools: dict[tuple[str, str], Any] = {}
        self._pools_lock = threading.Lock()
        self._allowed: dict[str, bool] = {}
        # A spider that wants its callback run on unchanged pages needs their bodies, so its
        # pages are fetched without validators (sitemaps still ask conditionally).
        self.parse_unchanged = bool(getattr(spider, "parse_unchanged", False))
        sitemap_callback = getattr(spider, "sitemap_callback", None)
        self.sitemap_callback: str | None = (
            sitemap_callback if isinstance(sitemap_callback, str) else None
        )

    def __repr__(self) -> str:
        return f"<Worker {type(self.spider).__name__} {len(self._pools)} pools>"

    # -- pools -------------------------------------------------------------------------------

    def _pool(self, url: str, host: str) -> Any:
        scheme = url[: url.find(":")]
        key = (scheme, host)
        pool = self._pools.get(key)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = connection_from_url(
                        url,
                        maxsize=self.settings.per_host,
                        block=True,
                        timeout=self.timeout,
                        headers={"User-Agent": self.user_agent},
                        retries=Retry(0, redirect=False),
                    )
                    self._pools[key] = pool
        return pool

    def close(self) -> None:
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
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
            failure = Failure(job.url, "internal", repr(exc), traceback.format_exc())
            return Outcome(job.fp, job.url, job.host, "failed", failures=(failure,))

    def _skips_unchanged(self, job: Job) -> bool:
        """Is an unchanged answer to ``job`` recorded without running its callback?"""
        return job.callback == SITEMAP_CALLBACK or not self.parse_unchanged

    def _request_headers(self, job: Job) -> dict[str, str]:
        headers = dict(job.headers)
        if self._skips_unchanged(job):
            # Validators came from a server: conditional_headers drops unusable ones (CR/LF).
            headers.update(conditional_headers(job.etag, job.last_modified))
        return headers

    def _process(self, job: Job, started: float) -> Outcome:
        settings = self.settings
        if job.callback == ROBOTS_CALLBACK:
            return self._robots(job)
        try:
            pool = self._pool(job.url, job.host)
            resp = pool.urlopen(
                job.method,
                job.url,
                body=job.body,
                headers=self._request_headers(job) or None,
                retries=Retry(0, redirect=False),
                redirect=False,
                preload_content=False,
                decode_content=True,
            )
        except HTTPError as exc:
            return self._fetch_error(job, self._past_deadline(exc, started, "response"))
        limit = settings.max_body_size
        if job.callback == SITEMAP_CALLBACK:
            limit = max(limit, MAX_SITEMAP_SIZE)  # the protocol's own cap
        try:
            body, cut = self._read_body(resp, started, limit)
        except HTTPError as exc:
            with contextlib.suppress(Exception):
                resp.close()
            return self._fetch_error(job, self._past_deadline(exc, started, "body"))
        finally:
            if resp is not None:
                with contextlib.suppress(Exception):
                    resp.release_conn()
        now = self.clock()
        status: int = resp.status
        headers = resp.headers
        content_type = headers.get("Content-Type")

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
                return Outcome(
                    job.fp,
                    job.url,
                    job.host,
                    "retry",
                    retry_at=decision.retry_at,
                    host_not_before=decision.host_not_before,
                    stats={"retries": 1},
                )
            page = self._page(job, status, headers, content_type, body, None, started, now)
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

        page = self._page(job, status, headers, content_type, body, None, started, now)
        if status == 304 or (
            self._skips_unchanged(job) and is_unchanged(status, page.content_hash, job.content_hash)
        ):
            # Unchanged: the stored page and its items stay; no callback, no links, and the
            # body does not travel to the parent (it is stored already).
            return Outcome(
                job.fp,
                job.url,
                job.host,
                "done",
                page=dataclasses.replace(page, body=None),
                failures=tuple(failures),
                stats={"unchanged": 1},
            )
        if job.callback == SITEMAP_CALLBACK:
            if not 200 <= status < 300:
                return Outcome(
                    job.fp, job.url, job.host, "done", page=page, failures=tuple(failures)
                )
            return self._sitemap(job, body, page, failures, cut)
        handled = getattr(self.spider, "handle_httpstatus_list", ())
        if not (200 <= status < 300 or status in handled):
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        callback_name = job.callback or "parse"
        if callback_name == "parse" and not is_textual(content_type):
            # A binary body reached through a link: store it, do not parse it.
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        return self._run_callback(job, status, headers, body, page, failures)

    def _read_body(self, resp: Any, started: float, limit: int) -> tuple[bytes, str | None]:
        """Read the decoded body up to ``limit`` bytes; the second value says why it was cut."""
        deadline = started + self.body_deadline
        parts: list[bytes] = []
        size = 0
        try:
            # read1: each piece as it arrives, so a trickled body meets the clock check below
            # between bytes instead of after a 64 KiB read.
            while chunk := resp.read1(_CHUNK):
                if size + len(chunk) > limit:
                    parts.append(chunk[: limit - size])
                    resp.close()
                    return b"".join(parts), f"body larger than {limit} bytes"
                parts.append(chunk)
                size += len(chunk)
                if self.clock() > deadline:
                    resp.close()
                    raise _BodyDeadline(f"body not complete after {self.body_deadline:.0f}s")
        except BodyTooLargeError:
            resp.close()
            return b"".join(parts), f"body larger than {limit} bytes"
        return b"".join(parts), None

    def _past_deadline(self, exc: HTTPError, started: float, what: str) -> HTTPError:
        """The pool's read timeout at the whole-response deadline, as that deadline's error."""
        cause = exc.reason if isinstance(exc, MaxRetryError) else exc
        if isinstance(cause, ReadTimeoutError) and (
            self.clock() - started >= self.body_deadline - _DEADLINE_SLACK
        ):
            return _BodyDeadline(f"{what} not complete after {self.body_deadline:.0f}s")
        return exc

    def _fetch_error(self, job: Job, exc: BaseException) -> Outcome:
        now = self.clock()
        kind = "timeout" if isinstance(exc, _BodyDeadline) else fetch.error_kind(exc)
        message = str(exc) or type(exc).__name__
        if fetch.is_retryable_error(exc) and not isinstance(exc, _BodyDeadline):
            decision = fetch.decide_retry(job.attempt, self.settings.retries, now, self.rand)
            if not decision.give_up:
                return Outcome(
                    job.fp,
                    job.url,
                    job.host,
                    "retry",
                    retry_at=decision.retry_at,
                    stats={"retries": 1},
                )
        failure = Failure(job.url, kind, message)
        return Outcome(job.fp, job.url, job.host, "failed", failures=(failure,))

    def _page(
        self,
        job: Job,
        status: int,
        headers: Any,
        content_type: str | None,
        body: bytes,
        location: str | None,
        started: float,
        now: float,
    ) -> Page:
        keep = self.settings.store_body and status != 304
        return Page(
            url=job.url,
            status=status,
            headers=_headers_json(headers),
            content_type=content_type,
            size=len(body),
            body=body if keep else None,
            content_hash=hashlib.blake2b(body, digest_size=16).hexdigest() if body else None,
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            location=location,
            depth=job.depth,
            fetched_at=now,
            elapsed_ms=round((now - started) * 1000.0, 3),
        )

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
        raw = headers.get("Location")
        target = fetch.redirect_target(job.url, raw)
        canonical = None
        if target is not None:
            with contextlib.suppress(InvalidURL):
                canonical = canonicalize_url(target)
        page = self._page(job, status, headers, content_type, body, canonical, started, now)
        hops = (*job.redirect_urls, job.url)
        if canonical is None:
            if raw is not None:
                failures.append(Failure(job.url, "redirect", f"not followed: {raw[:200]!r}"))
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        if len(hops) > self.settings.max_redirects:
            failures.append(
                Failure(job.url, "redirect", f"more than {self.settings.max_redirects} redirects")
            )
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        if len(canonical) > self.settings.max_url_length:
            failures.append(Failure(job.url, "redirect", "target URL longer than max_url_length"))
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        method = fetch.redirect_method(status, job.method)
        body_out = job.body if method == job.method else None
        request = NewRequest(
            fp=fingerprint(canonical, method, body_out),
            url=canonical,
            host=url_host(canonical),
            method=method,
            headers=job.headers,
            body=body_out,
            callback=job.callback,
            meta=job.meta,
            depth=job.depth,
            redirect_urls=hops,
        )
        return Outcome(
            job.fp,
            job.url,
            job.host,
            "done",
            page=page,
            requests=(request,),
            failures=tuple(failures),
            stats={"redirects": 1},
        )

    # -- robots.txt and sitemaps ---------------------------------------------------------------

    def _robots(self, job: Job) -> Outcome:
        """Fetch the host's robots.txt through the host's own pool (it counts toward per_host)."""
        policy = fetch_robots(
            self._pool(job.url, job.host),
            job.url,
            user_agent=self.user_agent,
            timeout=self.timeout,
            crawl_delay_max=self.settings.crawl_delay_max,
            now=self.clock,
        )
        return Outcome(job.fp, job.url, job.host, "done", robots=policy)

    def _sitemap(
        self, job: Job, body: bytes, page: Page, failures: list[Failure], cut: str | None
    ) -> Outcome:
        """Queue what a sitemap lists: child sitemaps, or pages for the spider's callback."""
        if cut is not None:  # a cut sitemap is not parsed: a partial list could mislead
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        try:
            sitemap = parse_sitemap(body)
        except SitemapError as exc:
            failures.append(Failure(job.url, "sitemap", str(exc)))
            return Outcome(job.fp, job.url, job.host, "done", page=page, failures=tuple(failures))
        if sitemap.truncated:
            failures.append(
                Failure(job.url, "sitemap", f"more than {len(sitemap.entries)} URLs; rest ignored")
            )
        index = sitemap.kind == "index"
        max_len = self.settings.max_url_length
        skipped = sitemap.skipped
        requests: list[NewRequest] = []
        seen: set[int] = set()
        for entry in sitemap.entries:
            try:
                url = canonicalize_url(entry.loc)
            except InvalidURL:
                skipped += 1
                continue
            host = url_host(url)
            # Child sitemaps may live elsewhere (robots.txt cross-submission); pages obey the
            # spider's offsite filter like links do.
            if len(url) > max_len or (not index and not self._allows(host)):
                skipped += 1
                continue
            fp = fingerprint(url)
            if fp in seen:
                continue
            seen.add(fp)
            requests.append(
                NewRequest(
                    fp=fp,
                    url=url,
                    host=host,
                    callback=SITEMAP_CALLBACK if index else self.sitemap_callback,
                    depth=job.depth,
                    lastmod=None if index else entry.lastmod,
                )
            )
        return Outcome(
            job.fp,
            job.url,
            job.host,
            "done",
            page=page,
            requests=tuple(requests),
            failures=tuple(failures),
            skipped_urls=skipped,
            stats={"sitemap_urls": len(requests)},
        )

    # -- the callback ------------------------------------------------------------------------

    def _run_callback(
        self,
        job: Job,
        status: int,
        headers: Any,
        body: bytes,
        page: Page,
        failures: list[Failure],
    ) -> Outcome:
        meta = dict(job.meta) if job.meta else {}
        if job.redirect_urls:
            meta["redirect_urls"] = list(job.redirect_urls)
        request = Request(
            job.url,
            callback=job.callback,
            method=job.method,
            headers=job.headers,
            body=job.body,
            meta=meta,
        )
        response = Response(
            job.url, status, headers, body, request=request, depth=job.depth, meta=meta
        )
        callback = getattr(self.spider, job.callback or "parse", None)
        items: list[dict[str, Any]] = []
        urls: list[str] = []
        requests: list[Request] = []
        if callback is None:
            failures.append(Failure(job.url, "callback", f"spider has no method {job.callback!r}"))
        else:
            try:
                self._collect(callback(response), items, urls, requests)
            except Exception as exc:
                tb = traceback.format_exc()
                failures.append(Failure(job.url, "callback", f"{type(exc).__name__}: {exc}", tb))
        follows, new_requests, links, skipped = self._links(job, response.url, urls, requests)
        return Outcome(
            job.fp,
            job.url,
            job.host,
            "done",
            page=page,
            items=tuple(items),
            follows=follows,
            requests=new_requests,
            links=links if self.settings.store_links else (),
            failures=tuple(failures),
            skipped_urls=skipped,
        )

    @staticmethod
    def _collect(
        output: object,
        items: list[dict[str, Any]],
        urls: list[str],
        requests: list[Request],
    ) -> None:
        for value in iter_results(output):
            if isinstance(value, str):
                urls.append(value)
            elif isinstance(value, dict):
                items.append(value)
            else:
                requests.append(value)

    def _allows(self, host: str) -> bool:
        allowed = self._allowed.get(host)
        if allowed is None:
            if len(self._allowed) > _HOST_CACHE_MAX:
                self._allowed.clear()
            allowed = self._allowed[host] = bool(self.spider.allows(host))
        return allowed

    def _links(
        self, job: Job, base: str, urls: list[str], requests: list[Request]
    ) -> tuple[tuple[Follow, ...], tuple[NewRequest, ...], tuple[str, ...], int]:
        """Canonicalize, filter and fingerprint what the callback asked to follow."""
        settings = self.settings
        max_len = settings.max_url_length
        budget = settings.max_links_per_page
        depth = job.depth + 1
        prune = bool(settings.max_depth) and depth > settings.max_depth
        skipped = 0
        if len(urls) + len(requests) > budget:
            skipped += len(urls) + len(requests) - budget
            urls = urls[:budget]
            requests = requests[: max(0, budget - len(urls))]
        seen: set[int] = set()
        follows: list[Follow] = []
        links: list[str] = []
        allows = self._allows
        for raw in urls:
            if len(raw) > max_len:
                skipped += 1
                continue
            try:
                url = canonicalize_url(raw, base)
            except InvalidURL:
                skipped += 1
                continue
            if len(url) > max_len:
                skipped += 1
                continue
            host = url_host(url)
            if not allows(host):
                skipped += 1
                continue
            fp = fingerprint(url)
            if fp in seen:
                continue
            seen.add(fp)
            links.append(url)
            if not prune:
                follows.append((fp, url, host))
        new_requests: list[NewRequest] = []
        for req in requests:
            try:
                url = canonicalize_url(req.url, base)
            except InvalidURL:
                skipped += 1
                continue
            if len(url) > max_len:
                skipped += 1
                continue
            host = url_host(url)
            if not req.dont_filter and not allows(host):
                skipped += 1
                continue
            links.append(url)
            if prune:
                continue
            new_requests.append(
                NewRequest(
                    fp=fresh_fingerprint()
                    if req.dont_filter
                    else fingerprint(url, req.method, req.body),
                    url=url,
                    host=host,
                    method=req.method,
                    headers=req.headers,
                    body=req.body,
                    callback=req.callback_name,
                    priority=req.priority,
                    meta=req.meta or None,
                    depth=depth,
                    dont_filter=req.dont_filter,
                )
            )
        return tuple(follows), tuple(new_requests), tuple(links), skipped


class _BodyDeadline(HTTPError):
    """The body took longer than the whole-response deadline (a slowloris peer)."""


# -- the process ------------------------------------------------------------------------------


def _send_loop(out: queue.SimpleQueue[Outcome | None], conn: Any) -> None:
    """Batch finished Outcomes into few pipe writes; ``None`` ends the loop."""
    done = False
    while not done:
        first = out.get()
        batch: list[Outcome] = []
        if first is None:
            break
        batch.append(first)
        while len(batch) < _SEND_BATCH:
            try:
                more = out.get_nowait()
            except queue.Empty:
                break
            if more is None:
                done = True
                break
            batch.append(more)
        try:
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = pickle.dumps([_unpicklable(o) for o in batch], protocol=pickle.HIGHEST_PROTOCOL)
        try:
            conn.send_bytes(data)
        except OSError:
            return  # the parent is gone; nothing left to tell


def _unpicklable(outcome: Outcome) -> Outcome:
    try:
        pickle.dumps(outcome)
        return outcome
    except Exception as exc:
        failure = Failure(outcome.url, "callback", f"an item could not be sent: {exc!r}")
        return Outcome(
            outcome.fp,
            outcome.url,
            outcome.host,
            outcome.state,
            page=outcome.page,
            follows=outcome.follows,
            failures=(*outcome.failures, failure),
        )


def _fetch_loop(
    worker: Worker,
    jobs: queue.SimpleQueue[Job | None],
    out: queue.SimpleQueue[Outcome | None],
    stopping: threading.Event,
) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        if stopping.is_set():
            continue  # never started: the engine requeues it
        out.put(worker.process(job))


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Ask glibc for few malloc arenas: with one per thread, freed parse trees stay resident."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-8, arenas)  # M_ARENA_MAX


def _die_with_parent(parent_pid: int | None) -> None:
    """Make sure this process never outlives the one that forked it.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``; strictly,
    when the parent's forking thread ends, and the engine forks from the thread that runs the
    whole crawl). Everywhere, the job pipe's EOF ends the worker too (``worker_main``).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before we could ask to go with it


def worker_main(
    index: int,
    spider_cls: type[Spider],
    spider_kwargs: dict[str, str],
    settings: Settings,
    job_conn: Any,
    result_conn: Any,
    threads: int,
    foreign_conns: Iterable[Any] = (),
    parent_pid: int | None = None,
) -> None:
    """The body of worker process ``index``."""
    # The parent coordinates shutdown. Ctrl-C in a terminal sends SIGINT to the whole process
    # group, and systemd or a cron wrapper send SIGTERM to it: a worker that died on either
    # would lose the pages it is fetching, which the parent gives a grace period to finish
    # (and then requeues what is left). So both are ignored here, the handlers inherited
    # through fork go, and the parent's last resort for a straggler is SIGKILL. What made
    # SIGTERM fatal before still holds: a worker can never outlive its parent (below).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    for conn in foreign_conns:
        with contextlib.suppress(OSError):
            conn.close()
    _limit_malloc_arenas()
    spider = spider_cls(**spider_kwargs)
    worker = Worker(spider, settings)
    jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
    out: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
    stopping = threading.Event()
    fetchers = [
        threading.Thread(
            target=_fetch_loop, args=(worker, jobs, out, stopping), name=f"fetch-{index}-{i}"
        )
        for i in range(threads)
    ]
    sender = threading.Thread(target=_send_loop, args=(out, result_conn), name=f"send-{index}")
    for thread in (*fetchers, sender):
        thread.daemon = True
        thread.start()
    try:
        while True:
            try:
                kind, payload = pickle.loads(job_conn.recv_bytes())
            except (EOFError, OSError):
                # The pipe closed without a "stop": the parent is gone, and nobody is left to
                # receive what we would fetch. Leave now, in-flight fetches and all (the next
                # run requeues them); waiting for them could take a whole response deadline.
                os._exit(0)
            if kind == "stop":
                break
            for job in payload:
                jobs.put(job)
    finally:
        stopping.set()
        for _ in fetchers:
            jobs.put(None)
        for thread in fetchers:
            thread.join()
        out.put(None)
        sender.join()
        worker.close()
        with contextlib.suppress(OSError):
            result_conn.close()
