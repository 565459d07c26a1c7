"""The parent process: frontier <-> workers <-> storage, limits, signals and the ``runs`` row.

How this works: :func:`crawl` forks N worker processes first (before the parent has opened
anything worth inheriting), then opens the :class:`~crawler.storage.Store`, returns rows left
"in flight" by a crashed run to the queue, begins a run and seeds the spider's start requests.
The loop is single-threaded and is the only SQLite writer:

1. **dispatch** — for each host with queued work whose politeness clock allows a start (fewest
   busy hosts first), take at most its free slots from the Store and send the Jobs to the
   worker that owns the host (``owner_of``). The per-host limit therefore holds across
   processes by construction, no worker thread ever waits on a pool slot, and a slow host
   only ever occupies its own slots.
2. **wait** on every worker's result pipe and process sentinel at once.
3. **record** — drain every pipe that is ready, write the whole batch of Outcomes in one
   transaction, update clocks and counters, then dispatch again.

A worker that dies is noticed through its sentinel: its in-flight entries go back to the queue
and a replacement is forked. SIGINT/SIGTERM stop dispatching and give in-flight work a few
seconds; a second signal stops at once. Either way whatever was not answered is requeued in
the database, so a later run resumes where this one stopped. Workers ignore both signals (a
terminal or a supervisor signals the whole process group), so their in-flight fetches can end
within the grace; a worker still busy after it is SIGKILLed, and one whose parent is gone
exits by itself (``crawler.worker``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import multiprocess
from multiprocess.connection import wait as wait_ready

from crawler.frontier import (
    InvalidURL,
    Politeness,
    PolitenessPolicy,
    canonicalize_url,
    fingerprint,
    owner_of,
    url_host,
)
from crawler.messages import SITEMAP_CALLBACK, Failure, Job, NewRequest, Outcome
from crawler.robotsgate import Gate, RobotsGate
from crawler.runlock import RunLock
from crawler.settings import Settings, SettingsError, resolve_settings
from crawler.spider import Request, Spider
from crawler.worker import STOP, default_threads, fresh_fingerprint, worker_main

if TYPE_CHECKING:
    from crawler.robots import RobotsPolicy
    from crawler.storage import Store

__all__ = [
    "EXIT_COULD_NOT_START",
    "EXIT_FINISHED",
    "EXIT_LIMIT",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_THRESHOLD",
    "EXIT_WORKERS",
    "RunResult",
    "SpiderStartError",
    "crawl",
]

log = logging.getLogger("crawler")

EXIT_FINISHED = 0
EXIT_THRESHOLD = 1  # finished, but max_error_rate or min_items was crossed
EXIT_WORKERS = 1  # workers kept dying
EXIT_COULD_NOT_START = 3
EXIT_LIMIT = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

GRACE = 5.0  # seconds in-flight work gets after a stop
HARD_GRACE = 1.0  # after a second signal
PROGRESS_EVERY = 0.5
# A URL in flight when its worker died this many times (or retries + 1) is failed.
WORKER_DEATH_ATTEMPTS = 3
# With nothing in flight, a run waits for queued work due within this many seconds (retry
# backoff, a short Retry-After); work due later is left queued for the next run.
DEFER_AFTER = 300.0
LOG_EVERY = 10.0
_SEED_CHUNK = 1000


class SpiderStartError(Exception):
    """The spider's ``__init__`` or ``start_requests`` raised: the run could not start.

    The message is one line (``name: start_requests raised ValueError: ...``); the original
    exception is the ``__cause__`` and its traceback goes to the log at DEBUG.
    """

    exit_code = EXIT_COULD_NOT_START

    def __init__(self, spider: str, stage: str, exc: BaseException) -> None:
        self.spider = spider
        self.stage = stage
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        super().__init__(f"{spider}: {stage} raised {detail}")


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one call of :func:`crawl` did."""

    run_id: int
    exit_code: int
    finish_reason: str
    stats: dict[str, Any] = field(hash=False)


@dataclass(slots=True)
class _Handle:
    """The parent's view of one worker process."""

    index: int
    process: Any
    jobs: Any  # the parent's send end of the job pipe
    results: Any  # the parent's receive end of the result pipe
    in_flight: set[int] = field(default_factory=set)
    alive: bool = True

    def __repr__(self) -> str:
        return f"<worker {self.index} pid={self.process.pid} {len(self.in_flight)} in flight>"


@dataclass(slots=True)
class _Counters:
    pages: int = 0
    items: int = 0
    errors: int = 0
    bytes: int = 0
    skipped_urls: int = 0
    retries: int = 0
    redirects: int = 0
    dead_workers: int = 0
    unchanged: int = 0  # 304, or the stored body hash: page and items kept, no callback
    robots_denied: int = 0  # disallowed by robots.txt: an errors row "robots", not an error
    robots_fetched: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    per_host: Counter[str] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)


def crawl(
    spider_cls: type[Spider],
    *,
    settings: Settings,
    db_path: str | Path,
    spider_kwargs: dict[str, str] | None = None,
    fresh: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    busy_timeout: float = 30.0,
) -> RunResult:
    """Run ``spider_cls`` until its frontier is empty, a limit is reached or a signal arrives.

    Raises :class:`~crawler.runlock.LockedError` when another run holds the database
    (nothing was touched), :class:`~crawler.runlock.LockFileError` or
    :class:`~crawler.storage.StorageError` when the database cannot be used (waiting up to
    ``busy_timeout`` seconds for another writer), and :class:`SpiderStartError` when the
    spider's ``__init__`` or ``start_requests`` raises.
    """
    engine = _Engine(
        spider_cls, settings, Path(db_path), dict(spider_kwargs or {}), fresh, on_progress
    )
    engine.busy_timeout = busy_timeout
    return engine.run()


class _Engine:
    store: Store
    run_id: int
    busy_timeout: float = 30.0

    def __init__(
        self,
        spider_cls: type[Spider],
        settings: Settings,
        db_path: Path,
        spider_kwargs: dict[str, str],
        fresh: bool,
        on_progress: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.spider_cls = spider_cls
        self.settings = settings
        self.db_path = db_path
        self.spider_kwargs = spider_kwargs
        self.fresh = fresh
        self.on_progress = on_progress
        self.n = settings.worker_count
        self.threads = default_threads(settings)
        self.worker_cap = self.threads * 2  # jobs in flight per worker: one running, one ready
        self.ctx = multiprocess.get_context("fork")
        self.workers: list[_Handle] = []
        self.in_flight: dict[int, tuple[int, str, int]] = {}  # fp -> (worker, host, depth)
        self.politeness = Politeness(
            PolitenessPolicy(
                per_host=settings.per_host,
                delay=settings.delay,
                crawl_delay_max=settings.crawl_delay_max,
            )
        )
        self.counters = _Counters()
        self.signals: list[int] = []
        self.stop_reason: str | None = None
        self.exit_code = EXIT_FINISHED
        self.deadline: float | None = None  # when stopping: give up on in-flight work then
        self.abandoned = False  # in-flight work was given up on at the end of a grace
        self.started = time.time()
        self.replacements_left = 10 + 2 * self.n
        self.robots: RobotsGate | None = None  # set up with the spider (its User-Agent)
        self.recrawl_after: float | None = settings.recrawl_after

    def __repr__(self) -> str:
        return (
            f"<Engine {self.spider_cls.__name__} {len(self.workers)} workers "
            f"{len(self.in_flight)} in flight {self.counters.pages} pages>"
        )

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> RunResult:
        try:
            spider = self.spider_cls(**self.spider_kwargs)
        except Exception as exc:
            log.debug("spider __init__ raised", exc_info=True)
            raise SpiderStartError(
                self.spider_cls.name or self.spider_cls.__name__, "__init__", exc
            ) from exc
        name = spider.name or self.spider_cls.__name__
        # The run lock first, before any worker or the Store exists: a second run (and its
        # --fresh) never touches a database in use. Forked workers close their copy of the
        # lock's descriptor (crawler.runlock), so the lock goes with this process.
        lock = RunLock(self.db_path)
        lock.acquire()
        try:
            return self._run_locked(spider, name)
        finally:
            lock.release()

    def _run_locked(self, spider: Spider, name: str) -> RunResult:
        previous: dict[signal.Signals, Any] = {}
        run_id = 0
        start_error: SpiderStartError | None = None
        try:
            # Fork before anything else exists in the parent: no threads, no SQLite handle.
            # Inside the try: workers ignore SIGTERM, so any that were started must be stopped
            # by _stop_workers (multiprocessing's exit hook would terminate() and wait forever).
            for index in range(self.n):
                self.workers.append(self._start_worker(index))
            # Imported after the fork on purpose: sqlite-utils pulls in numpy (about 20 MB per
            # process), which the workers never need.
            from crawler.storage import StorageError, Store

            store = Store(self.db_path, fresh=self.fresh, busy_timeout=self.busy_timeout)
            store.reset_in_flight()
            run_id = store.begin_run(name, self.settings.as_dict())
            self.store = store
            self.run_id = run_id
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
            try:
                self._seed(spider)
            except StorageError:
                raise
            except Exception as exc:
                log.debug("start_requests raised", exc_info=True)
                start_error = SpiderStartError(name, "start_requests", exc)
                self.stop_reason, self.exit_code = str(start_error), EXIT_COULD_NOT_START
            if start_error is None:
                self._loop()
                self._check_thresholds()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stop_workers()
        stats = self._stats()
        reason = self.stop_reason or "finished"
        closed = getattr(spider, "closed", None)
        if callable(closed):
            try:
                closed(reason)
            except Exception:
                log.exception("spider.closed(%r) raised", reason)
        store.end_run(run_id, exit_code=self.exit_code, finish_reason=reason, stats=stats)
        store.close()
        if start_error is not None:
            raise start_error
        # DEBUG: a program (the CLI) prints its own summary; the log file still gets this.
        log.debug(
            "%s: %s (exit %d): %d pages, %d items, %d errors in %.1fs",
            name,
            reason,
            self.exit_code,
            stats["pages"],
            stats["items"],
            stats["errors"],
            stats["elapsed"],
        )
        return RunResult(run_id, self.exit_code, reason, stats)

    def _check_thresholds(self) -> None:
        """A finished run that crossed ``min_items`` or ``max_error_rate`` exits 1."""
        if self.exit_code != EXIT_FINISHED:
            return
        s = self.settings
        if s.min_items and self.counters.items < s.min_items:
            self.stop_reason = f"finished below min_items ({self.counters.items} < {s.min_items})"
            self.exit_code = EXIT_THRESHOLD
        elif s.max_error_rate is not None:
            bad, handled = self.store.run_url_errors(self.run_id)
            if handled and bad / handled > s.max_error_rate:
                self.stop_reason = (
                    f"finished above max_error_rate ({bad}/{handled} URLs failed,"
                    f" {bad / handled:.0%} > {s.max_error_rate:.0%})"
                )
                self.exit_code = EXIT_THRESHOLD

    def _seed(self, spider: Spider) -> None:
        """Load what earlier runs left (robots policies), queue the start requests and the
        spider's sitemaps, and queue again what is due (docs/cron.md, "What a new run
        fetches")."""
        now = time.time()
        self._setup_history(spider, now)
        batch: list[NewRequest] = []
        bad: list[Outcome] = []
        start_fps: list[int] = []
        for value in spider.start_requests():
            request = self._start_request(value, bad)
            if request is not None:
                batch.append(request)
                start_fps.append(request.fp)
            if len(batch) >= _SEED_CHUNK:
                self.store.add(batch)
                batch = []
        for raw in _url_list(getattr(spider, "sitemap_urls", None)):
            request = self._start_request(raw, bad)
            if request is not None:
                request = NewRequest(
                    request.fp, request.url, request.host, callback=SITEMAP_CALLBACK
                )
                batch.append(request)
                start_fps.append(request.fp)
        if batch:
            self.store.add(batch)
        if bad:
            self._record(bad)
        # Start URLs and sitemaps always (conditionally when known), stale pages when
        # recrawl_after is set. A fresh database has nothing done, so nothing changes there.
        self.store.schedule_recrawl(
            now, self.recrawl_after, start_fps, always_callbacks=(SITEMAP_CALLBACK,)
        )

    def _setup_history(self, spider: Spider, now: float) -> None:
        if self.recrawl_after is None:
            # crawl() callers that pass Settings directly still get the spider attribute
            # (the CLI layers it under -s and --recrawl-after already).
            value = getattr(spider, "recrawl_after", None)
            if value is not None:
                try:
                    self.recrawl_after = resolve_settings(
                        None, {"recrawl_after": value}
                    ).recrawl_after
                except SettingsError as exc:
                    log.warning("%s: ignoring recrawl_after: %s", spider.name, exc)
        if not self.settings.robots:
            return
        user_agent = getattr(spider, "user_agent", None) or self.settings.user_agent
        self.robots = RobotsGate(user_agent, self.settings.crawl_delay_max)
        rows = self.store.robots_policies(since=RobotsGate.since(now))
        for host, policy in self.robots.load(rows):
            self.politeness.set_crawl_delay(host, policy.crawl_delay)

    def _start_request(self, value: object, bad: list[Outcome]) -> NewRequest | None:
        request = value if isinstance(value, Request) else None
        raw = request.url if request is not None else value
        if not isinstance(raw, str):
            self.counters.skipped_urls += 1
            bad.append(_url_error(repr(raw), f"start_requests yielded {type(value).__name__}"))
            return None
        try:
            url = canonicalize_url(raw)
        except InvalidURL as exc:
            self.counters.skipped_urls += 1
            bad.append(_url_error(raw, str(exc)))
            return None
        if len(url) > self.settings.max_url_length:
            self.counters.skipped_urls += 1
            bad.append(_url_error(raw, "longer than max_url_length"))
            return None
        if request is None:
            return NewRequest(fingerprint(url), url, url_host(url))
        return NewRequest(
            fp=fresh_fingerprint()
            if request.dont_filter
            else fingerprint(url, request.method, request.body),
            url=url,
            host=url_host(url),
            method=request.method,
            headers=request.headers,
            body=request.body,
            callback=request.callback_name,
            priority=request.priority,
            meta=request.meta or None,
            dont_filter=request.dont_filter,
        )

    def _loop(self) -> None:
        next_progress = time.monotonic()
        next_log = next_progress + LOG_EVERY
        while True:
            now = time.time()
            self._check_signals_and_limits(now)
            if self.stop_reason is None:
                self._dispatch(now)
            if not self.in_flight:
                if self.stop_reason is not None:
                    break
                if not self.store.has_queued():
                    break
                if self.robots is not None and self.robots.only_waiting(
                    self.store.hosts_with_work(math.inf), now
                ):
                    # What is left waits for an unreachable robots.txt: the next run asks again.
                    self.stop_reason, self.exit_code = "robots.txt unreachable", EXIT_LIMIT
                    break
                if self._only_deferred_work(now):
                    break
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self._abandon_in_flight()
                break
            self._wait_and_record(self._wait_timeout(now))
            mono = time.monotonic()
            if mono >= next_progress:
                next_progress = mono + PROGRESS_EVERY
                if self.on_progress is not None:
                    self.on_progress(self._snapshot())
            if mono >= next_log:  # DEBUG: on_progress shows progress to people
                next_log = mono + LOG_EVERY
                snap = self._snapshot()
                log.debug(
                    "%d pages (%.1f/s), %d items, %d errors, %d queued, %d in flight",
                    snap["pages"],
                    snap["pages_per_s"],
                    snap["items"],
                    snap["errors"],
                    snap["queued"],
                    snap["in_flight"],
                )
        if self.exit_code == EXIT_LIMIT and not self.store.has_queued():
            # A limit with nothing left to do is simply a finished crawl.
            self.stop_reason, self.exit_code = "finished", EXIT_FINISHED

    def _only_deferred_work(self, now: float) -> bool:
        """Nothing in flight, and no queued entry may start for more than ``DEFER_AFTER``.

        A host that answered 503 with ``Retry-After: 3600`` must not keep a finished crawl
        sleeping for an hour: the run ends with that work queued (exit 4, "deferred") and the
        next run picks it up when it is due.
        """
        waits = (self.politeness.next_ready(now), self.store.next_not_before(now))
        known = [t for t in waits if t is not None]
        if not known or min(known) - now <= DEFER_AFTER:
            return False
        self.stop_reason, self.exit_code = "deferred", EXIT_LIMIT
        log.info("only work not due for %.0fs is left: stopping", min(known) - now)
        return True

    def _wait_timeout(self, now: float) -> float:
        if self.in_flight:
            return PROGRESS_EVERY
        wake = [now + PROGRESS_EVERY]
        ready = self.politeness.next_ready(now)
        if ready is not None:
            wake.append(ready)
        later = self.store.next_not_before()
        if later is not None:
            wake.append(later)
        return max(0.01, min(wake) - now)

    # -- stopping ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _stop(self, reason: str, exit_code: int, grace: float) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.exit_code = reason, exit_code
        self.deadline = time.monotonic() + grace
        for handle in self.workers:
            self._send(handle, STOP)

    def _check_signals_and_limits(self, now: float) -> None:
        s = self.settings
        if self.signals:
            first = self.signals[0]
            code = EXIT_SIGINT if first == signal.SIGINT else EXIT_SIGTERM
            name = "SIGINT" if first == signal.SIGINT else "SIGTERM"
            if len(self.signals) == 1 and self.deadline is None:
                log.warning("%s: stopping, waiting up to %.0fs for requests in flight", name, GRACE)
                self._stop(f"interrupted ({name})", code, GRACE)
            elif len(self.signals) > 1 and self.signals[-1] != -1:
                log.warning("second signal: stopping now")
                self.stop_reason, self.exit_code = f"interrupted ({name})", code
                self.deadline = min(self.deadline or math.inf, time.monotonic() + HARD_GRACE)
                self.signals.append(-1)  # handled
            return
        if self.stop_reason is not None:
            return
        if s.max_runtime and now - self.started >= s.max_runtime:
            self._stop("max_runtime", EXIT_LIMIT, GRACE)
        elif s.max_pages and self.counters.pages >= s.max_pages:
            self._stop("max_pages", EXIT_LIMIT, GRACE * 6)
        elif s.max_items and self.counters.items >= s.max_items:
            self._stop("max_items", EXIT_LIMIT, GRACE * 6)

    def _abandon_in_flight(self) -> None:
        """Return everything still unanswered to the queue (in the database)."""
        fps = list(self.in_flight)
        if fps:
            self.abandoned = True
            self.store.requeue(fps)
        self.in_flight.clear()
        for handle in self.workers:
            handle.in_flight.clear()

    # -- workers -------------------------------------------------------------------------------

    def _start_worker(self, index: int) -> _Handle:
        job_recv, job_send = self.ctx.Pipe(duplex=False)
        result_recv, result_send = self.ctx.Pipe(duplex=False)
        foreign = [job_send, result_recv]
        for other in self.workers:
            if other.index != index:
                foreign += [other.jobs, other.results]
        process = self.ctx.Process(
            target=worker_main,
            args=(
                index,
                self.spider_cls,
                self.spider_kwargs,
                self.settings,
                job_recv,
                result_send,
                self.threads,
                foreign,
                os.getpid(),
            ),
            name=f"crawler-worker-{index}",
            daemon=True,
        )
        process.start()
        job_recv.close()
        result_send.close()
        return _Handle(index, process, job_send, result_recv)

    def _send(self, handle: _Handle, message: tuple[str, Any]) -> bool:
        if not handle.alive:
            return False
        try:
            handle.jobs.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            return False
        return True

    def _worker_died(self, handle: _Handle) -> None:
        handle.alive = False
        self._drain(handle)
        lost = list(handle.in_flight)
        code = handle.process.exitcode
        # A worker that ends while we stop (or killed with its whole process group just as a
        # signal arrived, before the loop has seen it) is a stop, not a death.
        stopping = self.stop_reason is not None or bool(self.signals)
        if not stopping:
            log.warning(
                "worker %d died (exit code %s); %d URLs requeued", handle.index, code, len(lost)
            )
        if lost:
            # A death outside shutdown counts as an attempt of every URL it held, so a URL
            # that kills its worker each time ends as failed instead of looping forever.
            self.store.requeue(lost, count_attempt=not stopping)
            if not stopping:
                self._give_up_poison(lost, code)
            now = time.time()
            for fp in lost:
                entry = self.in_flight.pop(fp, None)
                if entry is not None:
                    self.politeness.finished(entry[1], now, ok=False)
                if self.robots is not None:
                    self.robots.lost(fp)
        handle.in_flight.clear()
        with contextlib.suppress(OSError):
            handle.jobs.close()
        with contextlib.suppress(OSError):
            handle.results.close()
        if stopping:
            return
        self.counters.dead_workers += 1
        if self.replacements_left <= 0:
            self._stop("workers keep dying", EXIT_WORKERS, GRACE)
            return
        self.replacements_left -= 1
        self.workers[handle.index] = self._start_worker(handle.index)

    def _give_up_poison(self, fps: list[int], code: int | None) -> None:
        attempts = max(WORKER_DEATH_ATTEMPTS, self.settings.retries + 1)
        message = f"its worker died while fetching it (exit code {code}); {attempts} attempts"
        failed = self.store.give_up(
            fps, max_attempts=attempts, kind="worker_died", message=message, run_id=self.run_id
        )
        if failed:
            log.warning("giving up on %d URLs that kept killing their worker", len(failed))
            self.counters.errors += len(failed)
            self.counters.errors_by_kind["worker_died"] += len(failed)

    def _stop_workers(self) -> None:
        for handle in self.workers:
            self._send(handle, STOP)
        # An idle worker exits at once on STOP. One still fetching work the loop already gave
        # up on (its grace is spent) only gets a moment; workers ignore SIGTERM, so the last
        # resort is SIGKILL.
        hurry = len(self.signals) > 1 or self.abandoned
        deadline = time.monotonic() + (HARD_GRACE if hurry else GRACE)
        for handle in self.workers:
            handle.process.join(max(0.0, deadline - time.monotonic()))
        for handle in self.workers:
            if handle.process.is_alive():
                handle.process.kill()
                handle.process.join(1.0)
            for conn in (handle.jobs, handle.results):
                with contextlib.suppress(OSError):
                    conn.close()
            with contextlib.suppress(Exception):
                handle.process.close()

    # -- dispatch and record -------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        s = self.settings
        budget = math.inf
        if s.max_pages:
            budget = s.max_pages - self.counters.pages - len(self.in_flight)
            if budget <= 0:
                return
        hosts = self.store.hosts_with_work(now)
        if not hosts:
            return
        outgoing: dict[int, list[Job]] = {}
        denied: list[Outcome] = []
        politeness = self.politeness
        for host in politeness.ready(hosts, now):
            handle = self.workers[owner_of(host, self.n)]
            if not handle.alive:
                continue
            room = min(politeness.free_slots(host, now), self.worker_cap - len(handle.in_flight))
            if budget < room:
                room = int(budget)
            if room <= 0:
                continue
            policy = None
            if self.robots is not None:
                gate, policy = self.robots.state(host, now)
                if gate is not Gate.GO:
                    job = self._robots_gate(host, gate, policy, now)
                    if job is not None:
                        politeness.started(host, now)
                        self.in_flight[job.fp] = (handle.index, host, job.depth)
                        handle.in_flight.add(job.fp)
                        outgoing.setdefault(handle.index, []).append(job)
                    continue
            jobs = self.store.take(host, room, now)
            if policy is not None:
                jobs = self._obey_robots(policy, jobs, denied)
            for job in jobs:
                politeness.started(host, now)
                self.in_flight[job.fp] = (handle.index, host, job.depth)
                handle.in_flight.add(job.fp)
            if jobs:
                outgoing.setdefault(handle.index, []).extend(jobs)
                budget -= len(jobs)
                if budget <= 0:
                    break
        for index, jobs in outgoing.items():
            self._send(self.workers[index], ("jobs", jobs))
            # A failed send means the worker is dying; its sentinel tells us soon and the
            # jobs are requeued with the rest of its in-flight set.
        if denied:
            self._record(denied)

    def _robots_gate(
        self, host: str, gate: Gate, policy: RobotsPolicy | None, now: float
    ) -> Job | None:
        """A host whose rules are not known: the Job that fetches its robots.txt, if due."""
        assert self.robots is not None
        if gate is Gate.FETCH:
            url = self.store.queued_url(host)
            if url is not None:
                return self.robots.begin(host, url, now)
        elif gate is Gate.WAIT and policy is not None and policy.retry_at is not None:
            self.politeness.push(host, policy.retry_at)  # wake up then, not before
        return None

    def _obey_robots(
        self, policy: RobotsPolicy, jobs: list[Job], denied: list[Outcome]
    ) -> list[Job]:
        """The Jobs robots.txt allows; the others become "done" with a ``robots`` errors row."""
        allowed = []
        for job in jobs:
            if policy.allows(job.url):
                allowed.append(job)
            else:
                failure = Failure(job.url, "robots", "disallowed by robots.txt")
                denied.append(Outcome(job.fp, job.url, job.host, "done", failures=(failure,)))
        return allowed

    def _robots_answer(self, o: Outcome, now: float) -> None:
        """Keep a host's new robots policy, in memory and in the database, and apply it."""
        assert self.robots is not None
        host, policy, sent = self.robots.finish(o.fp, o.robots, now)
        self.store.put_robots(host, RobotsGate.row(policy))
        self.counters.robots_fetched += 1
        delay = policy.crawl_delay
        self.politeness.set_crawl_delay(host, delay)
        if delay:
            # Crawl-delay counts from the robots.txt request too: it was a request start.
            self.politeness.push(host, sent + delay)
        if policy.kind == "disallow_all" and policy.retry_at is not None:
            log.warning(
                "%s: robots.txt unreachable (%s); its URLs wait until %s",
                host,
                policy.status or "no connection",
                time.strftime("%H:%M:%S", time.localtime(policy.retry_at)),
            )
            self.politeness.push(host, policy.retry_at)
        if self.settings.sitemaps and policy.sitemaps:
            self._queue_sitemaps(policy.sitemaps)

    def _queue_sitemaps(self, urls: Iterable[str]) -> None:
        requests = []
        for raw in urls:
            try:
                url = canonicalize_url(raw)
            except InvalidURL:
                self.counters.skipped_urls += 1
                continue
            if len(url) <= self.settings.max_url_length:
                requests.append(
                    NewRequest(fingerprint(url), url, url_host(url), callback=SITEMAP_CALLBACK)
                )
        if requests:
            self.store.add(requests)

    def _wait_and_record(self, timeout: float) -> None:
        by_conn = {h.results: h for h in self.workers if h.alive}
        by_sentinel = {h.process.sentinel: h for h in self.workers if h.alive}
        ready = wait_ready([*by_conn, *by_sentinel], timeout)
        batch: list[Outcome] = []
        for obj in ready:
            handle = by_conn.get(obj)
            if handle is not None:
                batch.extend(self._recv_all(handle))
        if batch:
            self._record(batch)
        for obj in ready:
            handle = by_sentinel.get(obj)
            if handle is not None and handle.alive:
                # The sentinel fires when the dying process closes its files, a moment before
                # it can be reaped: wait for that moment (no zombie, a known exit code).
                handle.process.join(1.0)
                self._worker_died(handle)

    def _recv_all(self, handle: _Handle) -> Iterator[Outcome]:
        conn = handle.results
        try:
            while conn.poll():
                yield from pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return

    def _drain(self, handle: _Handle) -> None:
        batch = list(self._recv_all(handle))
        if batch:
            self._record(batch)

    def _record(self, batch: list[Outcome]) -> None:
        now = time.time()
        c = self.counters
        politeness = self.politeness
        robots = self.robots
        if robots is not None and any(robots.is_robots(o.fp) for o in batch):
            answers = [o for o in batch if robots.is_robots(o.fp)]
            batch = [o for o in batch if not robots.is_robots(o.fp)]
            for o in answers:
                entry = self.in_flight.pop(o.fp, None)
                if entry is not None:
                    self.workers[entry[0]].in_flight.discard(o.fp)
                    politeness.finished(entry[1], now, ok=True)
                self._robots_answer(o, now)
        for o in batch:
            entry = self.in_flight.pop(o.fp, None)
            if entry is not None:
                index, host, _depth = entry
                self.workers[index].in_flight.discard(o.fp)
                politeness.finished(host, now, ok=o.state == "done")
            if o.host_not_before is not None:
                politeness.push(o.host, o.host_not_before)
            page = o.page
            if page is not None:
                c.pages += 1
                c.bytes += page.size
                c.by_status[page.status] += 1
                c.per_host[o.host] += 1
            c.items += len(o.items)
            for failure in o.failures:
                if failure.kind == "robots":
                    c.robots_denied += 1
                    continue
                c.errors += 1
                c.errors_by_kind[failure.kind] += 1
            c.unchanged += o.stats.get("unchanged", 0)
            c.skipped_urls += o.skipped_urls
            if o.state == "retry":
                c.retries += 1
            c.redirects += o.stats.get("redirects", 0)
        self.store.record(
            batch,
            run_id=self.run_id,
            store_body=self.settings.store_body,
            store_links=self.settings.store_links,
            recrawl_after=self.recrawl_after,
        )

    # -- reporting -----------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        c = self.counters
        elapsed = max(1e-9, time.time() - self.started)
        counts = self.store.counts()
        return {
            "pages": c.pages,
            "pages_per_s": c.pages / elapsed,
            "queued": int(counts.get("queued", 0)),
            "in_flight": len(self.in_flight),
            "errors": c.errors,
            "items": c.items,
            "elapsed": elapsed,
        }

    def _stats(self) -> dict[str, Any]:
        c = self.counters
        elapsed = time.time() - self.started
        return {
            "pages": c.pages,
            "items": c.items,
            "errors": c.errors,
            "bytes": c.bytes,
            "elapsed": round(elapsed, 3),
            "pages_per_s": round(c.pages / elapsed, 2) if elapsed > 0 else 0.0,
            "by_status": {str(k): v for k, v in sorted(c.by_status.items())},
            "per_host": dict(c.per_host.most_common()),
            "errors_by_kind": dict(c.errors_by_kind),
            "skipped_urls": c.skipped_urls,
            "retries": c.retries,
            "redirects": c.redirects,
            "dead_workers": c.dead_workers,
            "unchanged": c.unchanged,
            "robots_denied": c.robots_denied,
            "robots_fetched": c.robots_fetched,
            "workers": self.n,
        }


def _url_list(value: object) -> list[str]:
    """A spider's ``sitemap_urls``: a list, or one string of URLs (from ``-a``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _url_error(url: str, message: str) -> Outcome:
    """A start URL that could not be used: an errors row and no frontier entry."""
    return Outcome(0, url, "", "failed", failures=(Failure(url, "url", message),))
