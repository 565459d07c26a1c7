"""A worker process: Jobs in, one Outcome per Job out.

How this works: the engine starts N worker processes (``multiprocess``, fork context) and talks
to each over two one-way pipes. Down the job pipe come pickled batches (``("jobs", [Job, ...])``
or ``("stop", None)``); up the result pipe go pickled lists of ``Outcome``. Each worker has
its own pair, so a worker killed in the middle of a write can corrupt only its own pipe, never
a queue shared with its siblings.

Inside the process the main thread reads the job pipe into a local queue, ``threads`` fetch
threads run :meth:`JobRunner.process` on each Job (fetching side by side, running the spider's
callbacks one at a time: ``crawler.worker.callbacks``), and one sender thread batches finished
Outcomes into as few pipe writes as possible. A worker holds a share of every host's
``per_host`` slots (``crawler.engine.dispatch.slot_shares``; the shares sum to ``per_host``)
and keeps one ``HTTPConnectionPool(maxsize=per_host, block=True)`` per host it fetches from.
The engine never has more than a worker's share of one host in flight on that worker (nor
more than ``per_host`` across workers), so the pool fills lazily to at most the share and a
fetch thread never waits on a pool slot: the pool's blocking is a safety net.

This module is the process plumbing; :class:`~crawler.worker.runner.JobRunner` does the work for
one Job, and ``crawler.worker.callbacks`` runs the spider on the per-link path.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import queue
import signal
import sys
import threading
from collections.abc import Iterable
from typing import Any

from crawler.messages import Failure, Job, Outcome
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.worker.runner import JobRunner

__all__ = ["STOP", "default_threads", "worker_main"]

log = logging.getLogger("crawler")

STOP = ("stop", None)
_SEND_BATCH = 256  # outcomes per pipe write, at most
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def default_threads(settings: Settings) -> int:
    """Fetch threads per worker: a slow host holds at most ``per_host`` of them (the engine
    never sends more), which leaves four for the worker's other hosts. More threads mostly add
    GIL contention and resident memory."""
    return min(16, settings.per_host + 4)


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
    worker: JobRunner,
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


def _preload(spider_cls: type[Spider]) -> None:
    """Import what ``Spider.preload`` names before the first Job arrives.

    The engine forks the workers before it opens the store, which takes it tens of
    milliseconds (sqlite-utils' import alone is 35-45 ms): importing here, in every worker at
    once, fills that wait instead of lengthening it, as an import in the engine before the
    fork did (python3-doc: 1.62-1.67 cores over the crawl -> 1.69-1.74). A module that fails
    to import is the spider's to report: its own import raises in its callback, as an error
    row, instead of the worker dying before its first page.
    """
    for name in spider_cls.preload:
        try:
            importlib.import_module(name)
        except Exception:
            log.warning("%s.preload: %r failed to import", spider_cls.__name__, name, exc_info=True)


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
    _preload(spider_cls)
    spider = spider_cls(**spider_kwargs)
    worker = JobRunner(spider, settings)
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
