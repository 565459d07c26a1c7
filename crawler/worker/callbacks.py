"""Running a spider callback and turning its output into the parts of an Outcome.

The output (checked by ``spider.iter_results``) becomes items, ``Follow`` tuples and
``NewRequest``s. The per-link path is the hot one: a page can carry hundreds of links, each
admitted against the response URL (``crawler.urls.admit``: canonical form, length, offsite
filter, fingerprint; a refused link is skipped and counted, a repeat within the page only
skipped) and pruned past ``max_depth`` here, in the worker, on every core; a link this
worker has already sent to the parent is not sent again.
:meth:`CallbackRunner.links` is written for that: local names, one ``admit`` call per link and
nothing else it does not need. A callback that raises is a ``callback`` error with its
traceback; the page row and what it yielded before raising are kept.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import traceback
from collections.abc import Callable
from typing import Any

from crawler.cookies import COOKIES_META, LOGIN_META, LOGIN_PRIORITY, SESSION_META
from crawler.messages import Failure, Follow, Job, NewRequest, Outcome, Page
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider, iter_results
from crawler.urls import Admitted, Refusal, Refused, admit
from crawler.worker.outcomes import done
from crawler.worker.validate import ItemRules

__all__ = ["CallbackRunner", "fresh_fingerprint", "new_request"]

_HOST_CACHE_MAX = 100_000  # entries of the spider.allows() cache before it is cleared
# Entries of each of the sent-follows cache's two generations: a site's navigation (the links
# every page repeats) is a few hundred URLs; a crawl that only ever finds new URLs pays a dict
# miss a link and at most twice this many entries (about 14 MB) of memory. When the newer
# generation is full it becomes the older and the older is dropped; a link found in the older
# is copied forward, so what pages keep linking to survives. (Clearing the one dict when full
# forgot every link at once: on a 20,000-page bench site, whose pages link anywhere in it,
# the workers' CPU a page rose 30% and the engine's 2.4x against 6,000 pages, nearly all of it
# links canonicalized, fingerprinted and inserted again.)
_SENT_MAX = 16384
# The spider runs one callback at a time per worker (the fetch threads still fetch side by
# side). A worker is one of N processes for N cores, so a second parse in the same process
# buys no CPU; it only made threads fight over the GIL and malloc (python3-doc, 4 threads in
# process: 4.5-6.1 ms of CPU a page; one at a time: 4.0-4.9) and kept one parse tree alive per
# thread (a tree costs about 20 times its body). Scrapy runs its callbacks on one thread too.
_ABSOLUTE = ("http://", "https://")
# After a callback on a body this large, the freed parse tree is handed back to the kernel
# (glibc's malloc_trim): freed, it stays resident in the heap otherwise, and a worker's RSS
# sits at its largest page's tree for the rest of the crawl. Not after every large-ish page:
# the next pages fault the returned memory back in (python3-doc, 4 fetch threads in process:
# 0.55 ms of system CPU a page with 256 KB here, 0.14 with 1 MB; 38 of its 530 pages are
# over 256 KB, 2 over 1 MB), and a tree under ~20 MB left in the heap is reused by the next.
_TRIM_AFTER = 1 << 20


def _malloc_trim() -> Callable[[], object]:
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda: None
    return lambda: trim(0)


_trim = _malloc_trim()


def fresh_fingerprint() -> int:
    """A random signed 64-bit fingerprint, for a ``dont_filter`` request: never a duplicate."""
    return secrets.randbits(64) - (1 << 63)


def new_request(req: Request, admitted: Admitted, depth: int = 0) -> NewRequest:
    """A spider's :class:`Request` as a frontier row, at its admitted URL.

    ``dont_filter`` gets a random fingerprint, so it is never taken for a duplicate.
    """
    return NewRequest(
        fp=fresh_fingerprint() if req.dont_filter else admitted.fp,
        url=admitted.url,
        host=admitted.host,
        method=req.method,
        headers=req.headers,
        body=req.body,
        callback=req.callback,
        priority=req.priority,
        meta=request_meta(req),
        depth=depth,
        dont_filter=req.dont_filter,
    )


def request_meta(req: Request) -> dict[str, Any] | None:
    """``req.meta``, plus its session and own cookies, which travel in the frontier's meta
    (they survive a redirect hop and a restart with it)."""
    if req.session is None and not req.cookies:
        return req.meta or None
    meta = dict(req.meta)
    if req.session is not None:
        meta[SESSION_META] = req.session
    if req.cookies:
        meta[COOKIES_META] = dict(req.cookies)
    return meta


class CallbackRunner:
    """Runs a spider's callbacks for one worker; caches ``spider.allows(host)`` answers."""

    def __init__(self, spider: Spider, settings: Settings) -> None:
        self.spider = spider
        self.settings = settings
        self._allowed: dict[str, bool] = {}
        # Absolute link URL (as a callback yields it) -> its admission, for the links this
        # worker has already sent to the parent as follows in this run (see links()), in two
        # generations (see _SENT_MAX).
        self._sent: dict[str, Admitted] = {}
        self._sent_old: dict[str, Admitted] = {}
        self._parsing = threading.Lock()
        self.rules = ItemRules(spider)

    def __repr__(self) -> str:
        name = type(self.spider).__name__
        sent = len(self._sent.keys() | self._sent_old.keys())
        return f"<CallbackRunner {name} {len(self._allowed)} hosts {sent} sent>"

    def allows(self, host: str) -> bool:
        """``spider.allows(host)``, asked once per host (the cache is cleared when large)."""
        allowed = self._allowed.get(host)
        if allowed is None:
            if len(self._allowed) > _HOST_CACHE_MAX:
                self._allowed.clear()
            allowed = self._allowed[host] = bool(self.spider.allows(host))
        return allowed

    def run(
        self,
        job: Job,
        status: int,
        headers: Any,
        body: bytes,
        page: Page,
        failures: list[Failure],
    ) -> Outcome:
        """Run ``job``'s callback on the response; the Outcome with what it yielded."""
        meta = dict(job.meta) if job.meta else {}
        # The request's own cookie values are secrets: the callback has no use for them.
        meta.pop(COOKIES_META, None)
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
        callback = getattr(self.spider, job.callback or "parse", None)
        items: list[dict[str, Any]] = []
        urls: list[str] = []
        requests: list[Request] = []
        with self._parsing:
            response = Response(
                job.url, status, headers, body, request=request, depth=job.depth, meta=meta
            )
            if callback is None:
                msg = f"spider has no method {job.callback!r}"
                failures.append(Failure(job.url, "callback", msg))
            else:
                try:
                    _collect(callback(response), items, urls, requests)
                except Exception as exc:
                    tb = traceback.format_exc()
                    msg = f"{type(exc).__name__}: {exc}"
                    failures.append(Failure(job.url, "callback", msg, tb))
            base = response.url
            del response  # the parse tree goes with it, before the next callback parses
            # Under the lock too: CPU work, and the sent-follows cache is then never shared.
            follows, new_requests, links, skipped = self.links(job, base, urls, requests)
            if len(body) > _TRIM_AFTER:
                _trim()
        keys: tuple[str, ...] = ()
        kept = tuple(items)
        if self.rules.active and kept:
            kept, keys = self.rules.apply(job.url, kept, failures)
        return done(
            job,
            page,
            failures,
            items=kept,
            item_keys=keys,
            callback=job.callback or "parse",
            follows=follows,
            requests=new_requests,
            links=links if self.settings.store_links else (),
            skipped_urls=skipped,
        )

    def _remember(self, raw: str, admitted: Admitted) -> None:
        """``raw`` was sent as a follow: into the newer generation of the cache, which
        becomes the older one first when it is full (the older is dropped)."""
        if len(self._sent) >= _SENT_MAX:
            self._sent_old, self._sent = self._sent, {}
        self._sent[raw] = admitted

    def links(
        self, job: Job, base: str, urls: list[str], requests: list[Request]
    ) -> tuple[tuple[Follow, ...], tuple[NewRequest, ...], tuple[str, ...], int]:
        """Admit, deduplicate and prune what the callback asked to follow.

        The two loops look alike but are not the same rule: a URL string longer than
        ``max_url_length`` is skipped before it is parsed (even when its canonical form would
        be shorter), is deduplicated within the page and follows as a compact tuple; a
        ``Request`` may skip the offsite filter (``dont_filter``) and keeps its method, body
        and callback. They stay apart so the string loop (the hot one) makes no call per link
        it does not need.
        """
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
        allows = self.allows
        sent, old = self._sent, self._sent_old
        duplicate = Refusal.DUPLICATE  # an Enum member is a slow global lookup in a hot loop
        for raw in urls:
            known = sent.get(raw)
            if known is None and old:
                known = old.get(raw)
                if known is not None:
                    self._remember(raw, known)  # still linked to: into the newer generation
                    sent, old = self._sent, self._sent_old
            if known is not None:
                fp = known[2]
                if fp not in seen:
                    seen.add(fp)
                    links.append(known[0])
                continue
            if len(raw) > max_len:  # skipped unparsed: a huge string is never worth parsing
                skipped += 1
                continue
            admitted = admit(raw, base=base, max_url_length=max_len, allows=allows, seen=seen)
            if isinstance(admitted, Admitted):
                url, host, fp = admitted
                links.append(url)
                if not prune:
                    follows.append((fp, url, host))
                    # Only an absolute string means the same URL on every page.
                    if raw.startswith(_ABSOLUTE):
                        self._remember(raw, admitted)
                        sent, old = self._sent, self._sent_old
            elif admitted.reason is not duplicate:
                skipped += 1
        new_requests: list[NewRequest] = []
        for req in requests:
            admitted = admit(
                req.url,
                base=base,
                method=req.method,
                body=req.body,
                max_url_length=max_len,
                allows=None if req.dont_filter else allows,
            )
            if isinstance(admitted, Refused):
                skipped += 1
                continue
            links.append(admitted.url)
            if prune:
                continue
            new_requests.append(new_request(req, admitted, depth))
        if job.meta and LOGIN_META in job.meta and new_requests:
            new_requests = [_in_login(r, job.meta) for r in new_requests]
        return tuple(follows), tuple(new_requests), tuple(links), skipped


def _in_login(request: NewRequest, login_meta: dict[str, Any]) -> NewRequest:
    """A Request yielded while logging in is part of the login (in the same session)."""
    meta = dict(request.meta or {})
    meta[LOGIN_META] = True
    if SESSION_META in login_meta:
        meta.setdefault(SESSION_META, login_meta[SESSION_META])
    # Never a duplicate: the same login page was fetched by an earlier run (or login).
    return dataclasses.replace(
        request,
        meta=meta,
        fp=fresh_fingerprint(),
        dont_filter=True,
        priority=max(request.priority, LOGIN_PRIORITY),
    )


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
