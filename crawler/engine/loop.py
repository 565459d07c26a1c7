"""The parent process: frontier <-> workers <-> storage, the ``runs`` row and the loop.

How this works: :func:`crawl` forks N worker processes first (before the parent has opened
anything worth inheriting), then opens the store (:func:`~crawler.store.open_store`), returns
rows left "in flight" by a crashed run to the queue, begins a run and seeds the spider's start
requests (``crawler.engine.seeding``). The loop is single-threaded and is the only writer:

1. **dispatch** (``crawler.engine.dispatch``) — for each host with queued work whose
   politeness clock allows a start, take at most its free slots from the Store and send the
   Jobs to the worker that owns the host (``owner_of``).
2. **wait** on every worker's result pipe and process sentinel at once
   (``crawler.engine.workers``).
3. **record** — drain every pipe that is ready, write the whole batch of Outcomes in one
   transaction, update clocks and counters (``crawler.engine.runstats``), then dispatch again.

A worker that dies is noticed through its sentinel: its in-flight entries go back to the queue
and a replacement is forked. SIGINT/SIGTERM and the limits stop the run
(``crawler.engine.shutdown``): dispatching stops and in-flight work gets a few seconds; whatever
was not answered is requeued in the database, so a later run resumes where this one stopped.
Workers ignore both signals (a terminal or a supervisor signals the whole process group), so
their in-flight fetches can end within the grace; a worker still busy after it is SIGKILLed, and
one whose parent is gone exits by itself (``crawler.worker.process``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import multiprocess

from crawler.engine import gates, seeding
from crawler.engine.dispatch import Dispatcher
from crawler.engine.inflight import InFlight
from crawler.engine.nodes import Node
from crawler.engine.politeness import Politeness, PolitenessPolicy
from crawler.engine.robotsgate import RobotsGate
from crawler.engine.runlock import RunLock
from crawler.engine.runstats import RunStats, log_progress
from crawler.engine.sessions import Sessions, wants_login
from crawler.engine.shutdown import GRACE, HARD_GRACE, Shutdown
from crawler.engine.throttle import sample_of
from crawler.engine.workers import (
    Waiter,
    WorkerHandle,
    check_preload,
    close_pipes,
    recv_all,
    send,
    start_worker,
    stop_workers,
)
from crawler.errors import (
    EXIT_COULD_NOT_START,
    EXIT_FINISHED,
    EXIT_LIMIT,
    EXIT_WORKERS,
    SpiderStartError,
    StorageError,
)
from crawler.messages import SITEMAP_CALLBACK, NewRequest, Outcome
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.store import CrawlStore, database_file, is_database_url, open_store
from crawler.worker.process import STOP, default_threads

if TYPE_CHECKING:
    from crawler.store.api import NodeStore

__all__ = ["RunResult", "crawl"]

log = logging.getLogger("crawler")

PROGRESS_EVERY = 0.5
COALESCE_BELOW = 16  # a node's round with fewer outcomes waits for more (_wait_and_record)
COALESCE_WAIT = 0.03  # seconds, at most
IDLE_NODE_WAIT = 0.02  # a node's wait with nothing in flight, for its first IDLE_FAST seconds
IDLE_FAST = 0.5  # ... after which it waits PROGRESS_EVERY
# A URL in flight when its worker died this many times (or retries + 1) is failed.
WORKER_DEATH_ATTEMPTS = 3
# With nothing in flight, a run waits for queued work due within this many seconds (retry
# backoff, a short Retry-After); work due later is left queued for the next run.
DEFER_AFTER = 300.0
LOG_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one call of :func:`crawl` did."""

    run_id: int
    exit_code: int
    finish_reason: str
    stats: dict[str, Any] = field(hash=False)


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

    Raises :class:`~crawler.errors.LockedError` when another run holds the database
    (nothing was touched), :class:`~crawler.errors.LockFileError` or
    :class:`~crawler.errors.StorageError` when the database cannot be used (waiting up to
    ``busy_timeout`` seconds for another writer), and :class:`SpiderStartError` when the
    spider's ``__init__`` or ``start_requests`` raises.
    """
    # What --db names is checked first: a URL the store cannot serve fails before the run
    # lock makes a file next to it.
    target = str(db_path) if is_database_url(db_path) else database_file(db_path)
    engine = _Engine(spider_cls, settings, target, dict(spider_kwargs or {}), fresh, on_progress)
    engine.busy_timeout = busy_timeout
    return engine.run()


class _Engine:
    store: CrawlStore
    sessions: Sessions
    run_id: int
    busy_timeout: float = 30.0

    def __init__(
        self,
        spider_cls: type[Spider],
        settings: Settings,
        db_path: Path | str,  # a str: a postgresql:// URL
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
        self.ctx = multiprocess.get_context("fork")
        self.workers: list[WorkerHandle] = []
        self.waiter = Waiter()
        self.politeness = Politeness(
            PolitenessPolicy(
                per_host=settings.per_host,
                delay=settings.delay,
                crawl_delay_max=settings.crawl_delay_max,
            ),
            host_settings=settings.host_settings,
            autothrottle=settings.autothrottle,
        )
        # The one in-flight table: dispatch, the worker handles and this loop all read it.
        self.in_flight = InFlight()
        self._idle_since: float | None = None  # when this node last ran out of work in flight
        # Jobs in flight per worker: one running, one ready.
        self.dispatcher = Dispatcher(
            self.workers, self.in_flight, self.politeness, self.threads * 2
        )
        self.counters = RunStats()
        self.shutdown = Shutdown(on_stop=self._tell_workers_to_stop)
        self.replacements_left = 10 + 2 * self.n
        self.robots: RobotsGate | None = None  # set up with the spider (its User-Agent)
        self.recrawl_after: float | None = settings.recrawl_after
        self.track_items = False  # the spider declares item_key: record keeps item history
        self.start_deferred: Spider | None = None  # start requests waiting for a login
        # This process as a node of a run shared over PostgreSQL; None for SQLite.
        self.node: Node | None = None
        self._bad_logins: list[Outcome] = []

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
        # lock's descriptor (crawler.engine.runlock), so the lock goes with this process.
        # A postgresql:// server has no file to lock: the database is shared by design.
        if not isinstance(self.db_path, Path):
            return self._run_locked(spider, name)
        lock = RunLock(self.db_path)
        lock.acquire()
        try:
            return self._run_locked(spider, name)
        finally:
            lock.release()

    def _run_locked(self, spider: Spider, name: str) -> RunResult:
        shutdown = self.shutdown
        run_id = 0
        start_error: SpiderStartError | None = None
        try:
            # Fork before anything else exists in the parent: no threads, no SQLite handle.
            # Inside the try: workers ignore SIGTERM, so any that were started must be stopped
            # by stop_workers (multiprocessing's exit hook would terminate() and wait forever).
            check_preload(self.spider_cls)
            for index in range(self.n):
                self.workers.append(self._start_worker(index))
            # Opened after the fork on purpose: the workers never hold a database handle.
            store = open_store(
                self.db_path,
                fresh=self.fresh,
                busy_timeout=self.busy_timeout,
                db_retry=self.settings.db_retry,
            )
            seed = True
            if is_database_url(str(self.db_path)):
                # Several machines may run this spider: join its live run or start one.
                shared = cast("NodeStore", store)  # a postgresql:// store is one
                self.node = node = Node(shared, self.settings, self.politeness)
                run_id, seed = node.join(name, _storable(self.settings))
                self.dispatcher.node_hosts = node.hosts
                self.dispatcher.lease_deadline = node.deadline
                node.known_in_flight = self.in_flight.fps
            else:
                store.reset_in_flight()
                run_id = store.begin_run(name, _storable(self.settings))
            self.store = store
            self.run_id = run_id
            self.track_items = spider.item_key is not None
            if self.settings.autothrottle:
                self.politeness.learn(store.host_states())
            self.sessions = Sessions(spider, store, cookies=self.settings.cookies)
            shutdown.install()
            try:
                self._seed(spider, seed)
            except StorageError:
                raise
            except Exception as exc:
                log.debug("start_requests raised", exc_info=True)
                start_error = SpiderStartError(name, "start_requests", exc)
                shutdown.reason, shutdown.exit_code = str(start_error), EXIT_COULD_NOT_START
            if start_error is None:
                self._loop()
                shutdown.check_thresholds(
                    self.settings, self.counters.items, lambda: store.run_url_errors(run_id)
                )
        finally:
            shutdown.restore()
            stop_workers(self.workers, HARD_GRACE if shutdown.hurry else GRACE)
        stats = self.counters.summary(self.n)
        failed_gates = self._gates(name, stats) if start_error is None else []
        hosts = self.politeness.report()
        if hosts:
            stats["hosts"] = hosts
        if self.settings.autothrottle:
            store.put_host_states(self.politeness.learned(time.time()))
        reason = shutdown.reason or "finished"
        exit_code = shutdown.exit_code
        try:
            spider.closed(reason)
        except Exception:
            log.exception("spider.closed(%r) raised", reason)
        if self.node is not None:
            self.node.leave(exit_code, reason, stats)
        else:
            store.end_run(run_id, exit_code=exit_code, finish_reason=reason, stats=stats)
        store.close()
        if self.settings.on_finish:
            summary = {"spider": name, "run_id": run_id, "exit_code": exit_code}
            summary |= {"reason": reason, "failed_gates": [g.as_dict() for g in failed_gates]}
            counts = ("pages", "items", "items_seen", "errors", "item_changes", "elapsed")
            gates.run_on_finish(self.settings.on_finish, summary | _pick(stats, counts))
        if start_error is not None:
            raise start_error
        # DEBUG: a program (the CLI) prints its own summary; the log file still gets this.
        log.debug(
            "%s: %s (exit %d): %d pages, %d items, %d errors in %.1fs",
            name,
            reason,
            exit_code,
            stats["pages"],
            stats["items"],
            stats["errors"],
            stats["elapsed"],
        )
        return RunResult(run_id, exit_code, reason, stats)

    def _gates(self, name: str, stats: dict[str, Any]) -> list[gates.GateFailure]:
        """The item history's counts into ``stats``; the quality gates, which may make a
        finished run exit 1 (``crawler.engine.gates``)."""
        if self.track_items:
            stats["item_changes"] = self.store.item_change_counts(self.run_id)
        s = self.settings
        if not s.min_field_fill and s.max_drop is None:
            return []
        stats["items_seen"] = self.store.run_item_count(self.run_id)
        previous = self.store.recent_stats(name, self.run_id, gates.HISTORY)
        failed = gates.check(stats, previous, min_field_fill=s.min_field_fill, max_drop=s.max_drop)
        stats["failed_gates"] = [g.as_dict() for g in failed]
        self.shutdown.fail_gates(failed)
        return failed

    def _seed(self, spider: Spider, seed: bool = True) -> None:
        """Load what earlier runs left (robots policies), queue the start requests and the
        spider's sitemaps, and queue again what is due (docs/cron.md, "What a new run
        fetches"). A node joining a shared run (``seed`` false) finds its run seeded."""
        now = time.time()
        self.recrawl_after = seeding.recrawl_after(spider, self.settings)
        if self.settings.robots:
            user_agent = spider.user_agent or self.settings.agent
            self.robots = RobotsGate(user_agent, self.settings.crawl_delay_max)
            rows = self.store.robots_policies(since=RobotsGate.since(now))
            for host, policy in self.robots.load(rows):
                self.politeness.set_crawl_delay(host, policy.crawl_delay)
        if self.node is not None:
            self.node.robots = self.robots
            if not seed:
                self.sessions.load(now)
                return
        self.sessions.load(now)
        if self.settings.cookies or wants_login(spider):
            self.dispatcher.prepare = self.sessions.prepare
        if self.sessions.needs_login(now):
            # The start requests wait for the login to end (crawler.engine.sessions).
            logins = self.sessions.login_requests(self._start_request)
            self._flush_bad()
            if logins:
                self.store.add(logins)
                self.start_deferred = spider
                if self.node is not None:
                    self.node.seeded()
                return
        self._seed_start(spider, now)
        if self.node is not None:
            self.node.seeded()

    def _seed_start(self, spider: Spider, now: float) -> None:
        bad, start_fps = seeding.seed(spider, self.store, self.settings, self.counters)
        if bad:
            self._record(bad)
        # Start URLs and sitemaps always (conditionally when known), stale pages when
        # recrawl_after is set. A fresh database has nothing done, so nothing changes there.
        self.store.schedule_recrawl(
            now, self.recrawl_after, start_fps, always_callbacks=(SITEMAP_CALLBACK,)
        )

    def _start_request(self, value: object) -> NewRequest | None:
        """A value ``Spider.login()`` yielded as a frontier row (errors kept for later)."""
        return seeding.start_request(
            value, self.settings.max_url_length, self._bad_logins, self.counters
        )

    def _flush_bad(self) -> None:
        bad, self._bad_logins = self._bad_logins, []
        if bad:
            self.store.record(bad, run_id=self.run_id)

    def _loop(self) -> None:
        shutdown = self.shutdown
        next_progress = time.monotonic()
        next_log = next_progress + LOG_EVERY
        node = self.node
        while True:
            now = time.time()
            if node is not None:
                node.tick(self.counters, shutdown, now)
            shutdown.check(self.settings, now, self.counters)
            if shutdown.reason is None:
                self._dispatch(now)
            if not self.in_flight:
                if shutdown.reason is not None:
                    break
                # A node of a shared run waits while another node has work in flight.
                if node is None or not node.busy_elsewhere():
                    if not self.store.has_queued():
                        break
                    if self.robots is not None and self.robots.only_waiting(
                        self.store.hosts_with_work(math.inf), now
                    ):
                        # What is left waits for an unreachable robots.txt: the next run asks.
                        shutdown.reason, shutdown.exit_code = "robots.txt unreachable", EXIT_LIMIT
                        break
                    if self._only_deferred_work(now):
                        break
            elif shutdown.past_deadline():
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
                log_progress(self._snapshot())
        if shutdown.exit_code == EXIT_LIMIT and not self.store.has_queued():
            # A limit with nothing left to do is simply a finished crawl.
            shutdown.reason, shutdown.exit_code = "finished", EXIT_FINISHED

    def _only_deferred_work(self, now: float) -> bool:
        if self.node is not None and self.politeness.ready(self.store.hosts_with_work(now), now):
            # Work that may start now and was not dispatched waits for this node's lease on
            # its host (claims are paced; a host given back when it ran out of work is claimed
            # again): it is not deferred.
            return False
        waits = (self.politeness.next_ready(now), self.store.next_not_before(now))
        return self.shutdown.only_deferred(now, waits, DEFER_AFTER)

    def _wait_timeout(self, now: float) -> float:
        if self.in_flight:
            self._idle_since = None
            return PROGRESS_EVERY
        wake = [now + PROGRESS_EVERY]
        if self.node is not None:
            # A node with nothing in flight waits for the others (the end of the run, a host
            # they give back). At the end of a run the others' last pages land within a
            # fraction of a second: look every 20 ms then, so this node exits right after the
            # run's last page (with the waits doubling from 50 ms, it exited 30-50 ms late,
            # about 1% of a 5-second bench crawl); a longer idle looks every PROGRESS_EVERY,
            # two cheap statements a turn.
            if self._idle_since is None:
                self._idle_since = now
            if now - self._idle_since < IDLE_FAST:
                wake.append(now + IDLE_NODE_WAIT)
            claim = self.node.claim_wait()  # below its share: its next claim (every 0.2 s)
            if claim is not None:
                wake.append(now + claim)
        ready = self.politeness.next_ready(now)
        if ready is not None:
            wake.append(ready)
        later = self.store.next_not_before()
        if later is not None:
            wake.append(later)
        return max(0.01, min(wake) - now)

    def _snapshot(self) -> dict[str, Any]:
        counts = self.store.counts()
        return self.counters.snapshot(int(counts.get("queued", 0)), len(self.in_flight))

    # -- stopping ------------------------------------------------------------------------------

    def _tell_workers_to_stop(self) -> None:
        for handle in self.workers:
            send(handle, STOP)

    def _abandon_in_flight(self) -> None:
        """Return everything still unanswered to the queue (in the database)."""
        fps = self.dispatcher.abandon()
        if fps:
            self.shutdown.abandoned = True
            self.store.requeue(fps)

    # -- workers -------------------------------------------------------------------------------

    def _start_worker(self, index: int) -> WorkerHandle:
        return start_worker(
            self.ctx,
            index,
            self.workers,
            self.in_flight,
            self.spider_cls,
            self.spider_kwargs,
            self.settings,
            self.threads,
        )

    def _worker_died(self, handle: WorkerHandle) -> None:
        handle.alive = False
        self._drain(handle)
        lost = self.dispatcher.lost(handle.index, time.time())
        code = handle.process.exitcode
        # A worker that ends while we stop (or killed with its whole process group just as a
        # signal arrived, before the loop has seen it) is a stop, not a death.
        stopping = self.shutdown.reason is not None or self.shutdown.signalled
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
            if self.robots is not None:
                for fp in lost:
                    self.robots.lost(fp)
        close_pipes(handle)
        if stopping:
            return
        self.counters.dead_workers += 1
        if self.replacements_left <= 0:
            self.shutdown.stop("workers keep dying", EXIT_WORKERS, GRACE)
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
            self.counters.count_errors("worker_died", len(failed))

    # -- dispatch and record -------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        budget = math.inf
        if self.settings.max_pages:
            budget = self.settings.max_pages - self.counters.pages - len(self.in_flight)
            if self.node is not None:
                budget -= self.node.others_pages(self.counters)
            if budget <= 0:
                return
        denied = self.dispatcher.dispatch(self.store, self.robots, now, budget)
        if denied:
            self._record(denied)

    def _robots_answer(self, o: Outcome, now: float) -> None:
        """Keep a host's new robots policy, in memory and in the database, and apply it."""
        assert self.robots is not None
        host, policy = self.robots.finish(o.fp, o.robots, now)
        self.store.put_robots(host, RobotsGate.row(policy))
        self.counters.robots_fetched += 1
        # Set before the robots Job counts as finished (``_record``): the Crawl-delay then
        # applies from the end of the robots.txt request too, by the clock's one rule.
        self.politeness.set_crawl_delay(host, policy.crawl_delay)
        if policy.kind == "disallow_all" and policy.retry_at is not None:
            log.warning(
                "%s: robots.txt unreachable (%s); its URLs wait until %s",
                host,
                policy.status or "no connection",
                time.strftime("%H:%M:%S", time.localtime(policy.retry_at)),
            )
            self.politeness.push(host, policy.retry_at)
        if self.settings.sitemaps and policy.sitemaps:
            requests, skipped = seeding.sitemap_requests(
                policy.sitemaps, self.settings.max_url_length
            )
            self.counters.skipped_urls += skipped
            if requests:
                self.store.add(requests)

    def _wait_and_record(self, timeout: float) -> None:
        batch, ended = self.waiter.wait(self.workers, timeout)
        if self.node is not None and batch and not ended and len(batch) < COALESCE_BELOW:
            # On PostgreSQL a round (hosts with work, a take per host, the record) is round
            # trips and server CPU whatever its size: while every fetch thread still has a Job
            # queued behind it (the workers do not idle), gather up to 30 ms more outcomes,
            # up to 16. A node with one worker has rounds half the size of a node with two,
            # so it pays these fixed costs twice as often; 10 ms and 8 outcomes left two
            # nodes x 1 worker at 86-94% of one node x 2 workers on two cores, 30 ms and 16
            # at 93-101% (median 99%; docs/distributed.md).
            end = time.monotonic() + COALESCE_WAIT
            busy = self.threads * len(self.workers)
            while len(batch) < COALESCE_BELOW and len(self.in_flight) - len(batch) > busy:
                left = end - time.monotonic()
                if left <= 0:
                    break
                more, ended = self.waiter.wait(self.workers, left)
                batch.extend(more)
                if ended:
                    break
        if batch:
            self._record(batch)
        for handle in ended:
            if handle.alive:
                # The sentinel fires when the dying process closes its files, a moment before
                # it can be reaped: wait for that moment (no zombie, a known exit code).
                handle.process.join(1.0)
                self._worker_died(handle)

    def _drain(self, handle: WorkerHandle) -> None:
        batch = list(recv_all(handle))
        if batch:
            self._record(batch)

    def _not_sent(self, batch: list[Outcome], now: float) -> list[Outcome]:
        """The batch without the Jobs a worker did not send because their host's lease
        deadline had passed (``lease_lost``, only a node's: ``crawler.worker.fence``): no
        row, no attempt; back in the queue if they are still this node's (after a takeover
        they are the new owner's, and requeue leaves them alone)."""
        lost = [o.fp for o in batch if o.state == "lease_lost"]
        for fp in lost:
            if self.robots is not None and self.robots.is_robots(fp):
                self.robots.lost(fp)  # asked again by whoever holds the host
            self.dispatcher.finished(fp, now, ok=True)
        back = self.store.requeue(lost)
        log.warning(
            "%d requests not sent: their host's lease had passed (%d back in the queue)",
            len(lost),
            back,
        )
        return [o for o in batch if o.state != "lease_lost"]

    def _record(self, batch: list[Outcome]) -> None:
        now = time.time()
        if self.node is not None and any(o.state == "lease_lost" for o in batch):
            batch = self._not_sent(batch, now)
        finished = self.dispatcher.finished
        robots = self.robots
        if robots is not None and any(robots.is_robots(o.fp) for o in batch):
            answers = [o for o in batch if robots.is_robots(o.fp)]
            batch = [o for o in batch if not robots.is_robots(o.fp)]
            for o in answers:
                self._robots_answer(o, now)
                finished(o.fp, now, ok=True)
        politeness = self.politeness
        for o in batch:
            finished(o.fp, now, ok=o.state == "done", sample=sample_of(o, now))
            if o.host_not_before is not None:
                politeness.push(o.host, o.host_not_before)
        relogin = self.sessions.absorb(batch, self._start_request) if batch else []
        if self.node is None:
            self.counters.count(batch)
        self.store.record(
            batch,
            run_id=self.run_id,
            store_body=self.settings.store_body,
            store_links=self.settings.store_links,
            recrawl_after=self.recrawl_after,
            track_items=self.track_items,
        )
        if self.node is not None:
            # A node counts what was written: results of hosts it lost were refused, and
            # the run's limits and stats sum the nodes' counters.
            refused = self.node.store.last_refused()
            self.counters.count([o for o in batch if o.fp not in refused] if refused else batch)
        if relogin:
            self.store.add(relogin)
            self._flush_bad()
        if self.start_deferred is not None and not self.sessions.logging_in:
            spider, self.start_deferred = self.start_deferred, None
            log.debug("%s: logged in; seeding the start requests", spider.name)
            self._seed_start(spider, now)


def _pick(stats: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: stats[name] for name in names if name in stats}


def _storable(settings: Settings) -> dict[str, Any]:
    """The settings as the ``runs`` row keeps them: the ``on_finish`` command may carry a
    secret (a webhook token), so only whether one was set is kept."""
    values = settings.as_dict()
    if values.get("on_finish"):
        values["on_finish"] = "(set)"
    return values
