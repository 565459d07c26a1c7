"""Writing spiders fast: the library side of ``crawler shell``, ``parse`` and ``reparse``.

None of these starts a crawl. ``shell`` and ``parse`` fetch through the connection pool
with the spider's settings (its User-Agent; robots.txt when ``robots`` is on) and write
nothing; ``reparse`` never touches the network: it runs the spider's current callbacks over
the bodies a run stored and says what they yield differently.

Callbacks run through the worker's :class:`~crawler.worker.callbacks.CallbackRunner`, so a
callback sees exactly the ``Response`` a crawl gives it, and its links are admitted (offsite,
length, ``max_depth``) by the same rules.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from crawler import http
from crawler.errors import CrawlerError, HistoryError, RobotsDisallowed
from crawler.http.util.redirect import next_hop
from crawler.messages import ROBOTS_CALLBACK, SITEMAP_CALLBACK, Failure, Job, NewRequest
from crawler.robots import RobotsPolicy, robots_url
from crawler.settings import Settings
from crawler.spider import Request, Response, Spider
from crawler.store.bodies import (
    StoredPage,
    latest_run,
    stored_form,
    stored_items,
    stored_pages_with_bodies,
    write_items,
)
from crawler.urls import canonicalize_url
from crawler.worker.callbacks import CallbackRunner
from crawler.worker.outcomes import make_page
from crawler.worker.runner import is_textual

__all__ = [
    "Change",
    "Fetcher",
    "PageResult",
    "RobotsDisallowed",
    "interact",
    "parse_page",
    "reparse",
    "shell_namespace",
    "view",
]


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10


# --- fetching ---------------------------------------------------------------------------------


@dataclass
class Fetcher:
    """Fetches single URLs through one pool manager with a spider's settings.

    ``extra_headers`` is the hook for per-request headers a crawl would add (the cookie jar's
    ``Cookie`` header once it exists): called with the URL, its answer is merged last.
    """

    settings: Settings
    extra_headers: Callable[[str], Mapping[str, str]] | None = None
    _pools: http.PoolManager = field(init=False)
    _robots: dict[str, RobotsPolicy] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._pools = http.PoolManager(timeout=self.settings.timeout)

    def close(self) -> None:
        self._pools.clear()

    def headers(self, url: str, given: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
        headers = {"User-Agent": self.settings.user_agent}
        headers.update(given)
        if self.extra_headers is not None:
            headers.update(self.extra_headers(url))
        return headers

    def _get(self, url: str, request: Request | None = None) -> Any:
        """One request, redirects not followed (:meth:`fetch` follows them hop by hop)."""
        method = request.method if request else "GET"
        body = request.body if request else None
        headers = self.headers(url, request.headers if request else ())
        try:
            return self._pools.request(
                method, url, body=body, headers=headers, redirect=False, retries=http.Retry(2)
            )
        except http.HTTPError as exc:
            raise CrawlerError(f"{url}: {getattr(exc, 'reason', None) or exc}") from None

    def check_robots(self, url: str) -> None:
        """Raise :class:`RobotsDisallowed` when robots.txt keeps the spider off ``url``."""
        if not self.settings.robots:
            return
        where = robots_url(url)
        policy = self._robots.get(where)
        if policy is None:
            try:
                answer = self._get(where)
                status, body = answer.status, answer.data
            except CrawlerError:
                status, body = None, None
            policy = self._robots[where] = RobotsPolicy.from_response(
                status,
                body,
                fetched_at=time.time(),
                user_agent=self.settings.user_agent,
                crawl_delay_max=self.settings.crawl_delay_max,
            )
        if not policy.allows(url):
            raise RobotsDisallowed(
                f"robots.txt disallows {url} for {self.settings.user_agent!r}"
                " (-s robots=false to fetch it anyway)"
            )

    def fetch(self, target: str | Request, depth: int = 0) -> Response:
        """One response, after redirects, as a callback would get it.

        Redirects are followed here, hop by hop, so that robots.txt and the header hook are
        asked about every URL, and a cross-origin hop drops credentials (``next_hop``)."""
        first = target if isinstance(target, Request) else Request(target)
        request, hops = first, list[str]()
        while True:
            self.check_robots(request.url)
            answer = self._get(request.url, request)
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECTS or not location:
                break
            if len(hops) >= _MAX_REDIRECTS:
                raise CrawlerError(f"{first.url}: more than {_MAX_REDIRECTS} redirects")
            hops.append(request.url)
            to_url = urljoin(request.url, location)
            hop = next_hop(answer.status, request.method, request.headers, request.url, to_url)
            request = request.replace(
                url=to_url,
                method=hop.method,
                headers=hop.headers,
                body=request.body if hop.keeps_body else None,
            )
        if hops:  # where a crawl's Response would be: the last hop
            request = request.replace(meta={**request.meta, "redirect_urls": hops})
        return Response(
            request.url, answer.status, answer.headers, answer.data, request=request, depth=depth
        )


def view(response: Response) -> str:
    """Write the body to a temporary file (kept) and return its path, to open in a browser."""
    suffix = ".html" if "html" in response.content_type else ".txt"
    fd, path = tempfile.mkstemp(prefix="crawler-view-", suffix=suffix)
    with os.fdopen(fd, "wb") as out:
        out.write(response.body)
    return path


def shell_namespace(
    spider: Spider, fetcher: Fetcher, url: str, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """What ``crawler shell`` puts in scope: ``response``, ``request``, ``spider``, ``fetch``,
    ``view`` (``fetch(url)`` replaces ``response`` and ``request``)."""
    ns: dict[str, Any] = {"spider": spider, "settings": fetcher.settings}

    def fetch(target: str | Request) -> Response:
        response = fetcher.fetch(target)
        ns["response"], ns["request"] = response, response.request
        echo(f"[crawler] {response.status} {response.url}")
        return response

    def show(response: Response | None = None) -> str:
        path = view(response if response is not None else ns["response"])
        echo(f"[crawler] body written to {path}")
        return path

    ns["fetch"], ns["view"] = fetch, show
    fetch(url)
    return ns


# --- running callbacks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageResult:
    """What one callback yielded on one page."""

    url: str
    depth: int
    callback: str
    items: tuple[dict[str, Any], ...]
    requests: tuple[NewRequest, ...]
    errors: tuple[Failure, ...]
    skipped: str | None = None  # why a crawl would not have run the callback on this page


def skip_reason(spider: Spider, response: Response, callback: str | None) -> str | None:
    """Why a crawl would not pass ``response`` to ``callback`` (the worker's rule), or None."""
    status = response.status
    if not (200 <= status < 300 or status in spider.handle_httpstatus_list):
        return f"status {status} is not passed to callbacks (see handle_httpstatus_list)"
    if (callback or "parse") == "parse" and not is_textual(response.headers.get("Content-Type")):
        return f"a {response.content_type} body is stored, not parsed, by parse"
    return None


def _job(url: str, callback: str | None, depth: int, meta: dict[str, Any] | None) -> Job:
    return Job(fp=0, url=url, host="", callback=callback, meta=meta, depth=depth)


def run_callback(
    runner: CallbackRunner, response: Response, callback: str | None, depth: int
) -> PageResult:
    """Run ``callback`` on ``response`` through the worker's runner; what it yielded.

    A page a crawl would not pass to the callback (a 404, a binary body for ``parse``) yields
    nothing, with the reason."""
    reason = skip_reason(runner.spider, response, callback)
    if reason is not None:
        return PageResult(response.url, depth, callback or "parse", (), (), (), reason)
    job = _job(response.url, callback, depth, response.meta or None)
    now = time.time()
    page = make_page(
        job, response.status, response.headers, response.content_type, response.body,
        None, now, now, False,
    )  # fmt: skip
    failures: list[Failure] = []
    outcome = runner.run(job, response.status, response.headers, response.body, page, failures)
    requests = list(outcome.requests)
    # Plain links (``yield url``) follow with the default callback: show them as requests too.
    for fp, url, host in outcome.follows:
        requests.append(NewRequest(fp=fp, url=url, host=host, depth=depth + 1))
    return PageResult(
        response.url, depth, callback or "parse", outcome.items, tuple(requests), outcome.failures
    )


def _seen_key(url: str) -> str:
    try:
        return canonicalize_url(url)
    except ValueError:
        return url


def parse_page(
    spider: Spider,
    fetcher: Fetcher,
    url: str,
    *,
    callback: str | None = None,
    depth: int = 1,
) -> list[PageResult]:
    """Fetch ``url``, run ``callback`` on it and, to ``depth`` levels (1: this page only),
    on the pages its requests lead to. Writes nothing."""
    if callback is not None and not callable(getattr(spider, callback, None)):
        raise CrawlerError(f"spider {spider.name!r} has no method {callback!r}")
    runner = CallbackRunner(spider, fetcher.settings)
    results: list[PageResult] = []
    level: list[tuple[Request, str | None]] = [(Request(url), callback)]
    seen: set[str] = set()
    for current in range(depth):
        following: list[tuple[Request, str | None]] = []
        for request, name in level:
            key = _seen_key(request.url)
            if key in seen:
                continue
            seen.add(key)
            response = fetcher.fetch(request, depth=current)
            result = run_callback(runner, response, name, current)
            results.append(result)
            for new in result.requests:
                following.append(
                    (
                        Request(
                            new.url,
                            method=new.method,
                            headers=new.headers,
                            body=new.body,
                            meta=new.meta or {},
                        ),
                        new.callback,
                    )
                )
        level = following
    return results


# --- reparse ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the stored items of a page and what the code yields now."""

    kind: str  # "added", "removed" or "changed"
    page_url: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    def fields(self) -> dict[str, tuple[Any, Any]]:
        """The fields that differ, ``name -> (old, new)``; a missing field is None."""
        old, new = self.old or {}, self.new or {}
        names = sorted({*old, *new})
        return {
            k: (old.get(k), new.get(k)) for k in names if _cell(old.get(k)) != _cell(new.get(k))
        }


def _cell(value: Any) -> Any:
    """A value as a column compares it: SQLite's column affinity turns 10.0 into '10.0' in a
    TEXT column and '10' into 10 in an INTEGER one, so a number and its text are the same."""
    return str(value) if isinstance(value, int | float) else value


def _key(item: Mapping[str, Any]) -> str:
    return json.dumps({k: _cell(v) for k, v in item.items()}, sort_keys=True, default=str)


def diff_page(page_url: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    """Items equal in both are left out; the rest pair up in order as changed, and what is
    left over is added or removed."""
    left = list(old)
    unmatched_new = []
    for item in new:
        key = _key(item)
        match = next((i for i, o in enumerate(left) if _key(o) == key), None)
        if match is None:
            unmatched_new.append(item)
        else:
            del left[match]
    changes = [Change("changed", page_url, o, n) for o, n in zip(left, unmatched_new, strict=False)]
    changes += [Change("removed", page_url, o, None) for o in left[len(unmatched_new) :]]
    changes += [Change("added", page_url, None, n) for n in unmatched_new[len(left) :]]
    return changes


@dataclass
class ReparseReport:
    run_id: int
    pages: int = 0
    items: int = 0
    changes: list[Change] = field(default_factory=list)
    errors: list[Failure] = field(default_factory=list)
    written_run: int | None = None


def reparse(
    spider: Spider,
    settings: Settings,
    db_path: str | os.PathLike[str],
    *,
    run_id: int | None = None,
    write: bool = False,
) -> ReparseReport:
    """Run ``spider``'s callbacks over the bodies run ``run_id`` stored (default: the latest
    run that stored any), offline. With ``write``, the new items are stored as a new run,
    under the run lock (:class:`~crawler.errors.LockedError` while a crawl holds it)."""
    if run_id is None:
        run_id = latest_run(db_path)
        if run_id is None:
            raise HistoryError(f"no run stored bodies in {db_path} (is store_body off?)")
    runner = CallbackRunner(spider, settings)
    report = ReparseReport(run_id)
    new_items: dict[str, list[dict[str, Any]]] = {}
    stored: StoredPage
    for stored in stored_pages_with_bodies(db_path, run_id):  # one body in memory at a time
        if stored.callback in (ROBOTS_CALLBACK, SITEMAP_CALLBACK):
            continue  # robots.txt and sitemaps are the crawler's, not the spider's callbacks
        response = Response(
            stored.url, stored.status, stored.headers, stored.body,
            request=Request(stored.url, callback=stored.callback, meta=stored.meta or {}),
            depth=stored.depth,
        )  # fmt: skip
        result = run_callback(runner, response, stored.callback, stored.depth)
        new_items[stored.url] = [dict(item) for item in result.items]
        report.errors.extend(result.errors)
        report.pages += 1
        report.items += len(result.items)
    if not new_items:
        raise HistoryError(
            f"run {run_id} stored no bodies in {db_path} (was store_body off, or did it fetch"
            " nothing new?)"
        )
    old = stored_items(db_path, run_id)
    for url, items in new_items.items():
        report.changes += diff_page(url, old.get(url, []), [stored_form(i) for i in items])
    if write:
        # The crawl's own lock: a run in progress on this database is never written under.
        from crawler.engine.runlock import RunLock
        from crawler.store import database_file

        with RunLock(database_file(db_path)):
            report.written_run = write_items(db_path, spider.name, new_items, reparse_of=run_id)
    return report


def interact(namespace: dict[str, Any], code: str | None = None) -> bool:
    """Run ``code`` in ``namespace``, or (no code) an interactive shell over it: IPython when
    it is installed, else the standard library's ``code`` console (which reads stdin, so a
    script can be piped in). False when ``code`` raised (its traceback is on stderr)."""
    if code is not None:
        try:
            exec(compile(code, "<crawler shell -c>", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            return False
        return True
    banner = "crawler shell: response, request, spider, fetch(url), view(response)"
    try:
        from IPython import start_ipython  # type: ignore[import-not-found]
    except ImportError:
        import code as console

        console.interact(banner=banner, local=namespace, exitmsg="")
    else:
        start_ipython(argv=[], user_ns=namespace, display_banner=False)
    return True
