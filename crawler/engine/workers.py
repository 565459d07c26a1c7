"""The parent's side of the worker processes: fork one, send it Jobs, read its Outcomes, stop all.

Each worker gets its own two one-way pipes (``crawler.worker.process`` explains why); a
:class:`WorkerHandle` is the parent's end of them plus the process, and sees its share of the
engine's one in-flight table (``crawler.engine.inflight``). Nothing here decides what to send
or when a worker counts as dead: the engine does. Kept apart so the loop reads as policy, not
as pipe and process plumbing.

The parent waits on the pipes once per round of its loop, hundreds of times a second, so the
wait is one ``select.poll`` object kept across rounds (:class:`Waiter`), rebuilt only when the
set of live workers changes, and a pipe is drained with a zero-timeout poll of its own
descriptor. ``multiprocess.connection.wait`` and ``Connection.poll`` build, fill and close a
``selectors`` object on every call: that was a third of the parent's CPU on a crawl of small
pages (postgresql-doc-15: three selectors a round, about 30 us each).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import pickle
import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crawler.engine.inflight import InFlight
from crawler.errors import SpiderLoadError
from crawler.messages import Outcome
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.worker.process import STOP, worker_main

__all__ = [
    "Waiter",
    "WorkerHandle",
    "check_preload",
    "close_pipes",
    "recv_all",
    "send",
    "start_worker",
    "stop_workers",
]


@dataclass(slots=True)
class WorkerHandle:
    """The parent's view of one worker process."""

    index: int
    process: Any
    jobs: Any  # the parent's send end of the job pipe
    results: Any  # the parent's receive end of the result pipe
    in_flight: InFlight  # the engine's table, shared by every handle
    alive: bool = True
    # The result pipe's descriptor alone, for a zero-timeout "anything more?" (recv_all).
    ready: Any = None

    def __repr__(self) -> str:
        return f"<worker {self.index} pid={self.process.pid} {self.busy} in flight>"

    @property
    def busy(self) -> int:
        """Jobs sent to this worker and not answered yet."""
        return self.in_flight.count(self.index)


def start_worker(
    ctx: Any,
    index: int,
    siblings: Sequence[WorkerHandle],
    in_flight: InFlight,
    spider_cls: type[Spider],
    spider_kwargs: dict[str, str],
    settings: Settings,
    threads: int,
) -> WorkerHandle:
    """Fork worker ``index``; it closes the parent's ends of its siblings' pipes."""
    job_recv, job_send = ctx.Pipe(duplex=False)
    result_recv, result_send = ctx.Pipe(duplex=False)
    foreign = [job_send, result_recv]
    for other in siblings:
        if other.index != index:
            foreign += [other.jobs, other.results]
    process = ctx.Process(
        target=worker_main,
        args=(
            index,
            spider_cls,
            spider_kwargs,
            settings,
            job_recv,
            result_send,
            threads,
            foreign,
            os.getpid(),
        ),
        name=f"crawler-worker-{index}",
        daemon=True,
    )
    process.start()
    job_recv.close()
    result_send.close()
    return WorkerHandle(index, process, job_send, result_recv, in_flight)


def check_preload(spider_cls: type[Spider]) -> None:
    """Check that what ``spider_cls.preload`` names can be imported, without importing it.

    Each worker imports those modules as it starts (``crawler.worker.process``), while the
    engine opens the store: the workers would otherwise wait idle for that, so the imports
    cost no time of the crawl, and the engine, which never parses, carries no copy. A name
    that cannot be found is the spider's mistake, said here once rather than by every worker.
    """
    for name in spider_cls.preload:
        try:
            why = "" if importlib.util.find_spec(name) is not None else " (not found)"
        except (ImportError, ValueError) as exc:
            why = f": {exc}"
        if why:
            raise SpiderLoadError(
                f"{spider_cls.__name__}.preload names {name!r}, which cannot be imported{why}"
            )


def send(handle: WorkerHandle, message: tuple[str, Any]) -> bool:
    """Send one message down the job pipe; False when the worker is dead or its pipe broke."""
    if not handle.alive:
        return False
    try:
        handle.jobs.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        return False
    return True


def recv_all(handle: WorkerHandle) -> Iterator[Outcome]:
    """Every Outcome already waiting in the worker's result pipe."""
    conn = handle.results
    try:
        if handle.ready is None:
            handle.ready = select.poll()
            handle.ready.register(conn.fileno(), select.POLLIN)
        ready = handle.ready.poll
        while ready(0):
            yield from pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return


class Waiter:
    """Waits on every live worker's result pipe and sentinel at once, with one poll object.

    The object is kept while the live workers stay the same handles (a replacement is a new
    handle), so a round costs one ``poll`` call instead of a selector built and torn down.
    """

    def __init__(self) -> None:
        self._poller = select.poll()
        self._key: tuple[Any, ...] = ()
        # descriptor -> (its worker, True for the process sentinel); holding the handles also
        # keeps their ids, part of the key, from being reused by new handles.
        self._fds: dict[int, tuple[WorkerHandle, bool]] = {}

    def __repr__(self) -> str:
        return f"<Waiter {len(self._fds)} descriptors>"

    def _watch(self, workers: Sequence[WorkerHandle]) -> None:
        live = [h for h in workers if h.alive]
        key = tuple((id(h), h.results.fileno(), h.process.sentinel) for h in live)
        if key == self._key:
            return
        self._poller = select.poll()
        self._fds = {}
        for h in live:
            for fd, sentinel in ((h.results.fileno(), False), (h.process.sentinel, True)):
                self._poller.register(fd, select.POLLIN)
                self._fds[fd] = (h, sentinel)
        self._key = key

    def wait(
        self, workers: Sequence[WorkerHandle], timeout: float
    ) -> tuple[list[Outcome], list[WorkerHandle]]:
        """Wait up to ``timeout`` seconds on every live worker's result pipe and sentinel.

        Returns the Outcomes that arrived and the workers whose sentinel fired (they may have
        sent Outcomes just before dying: those are in the first list).
        """
        self._watch(workers)
        batch: list[Outcome] = []
        ended: list[WorkerHandle] = []
        if not self._fds:
            time.sleep(max(0.0, timeout))
            return batch, ended
        for fd, _event in self._poller.poll(max(0, math.ceil(timeout * 1000))):
            handle, sentinel = self._fds[fd]
            if sentinel:
                ended.append(handle)
            elif handle.alive:
                batch.extend(recv_all(handle))
        return batch, ended


def stop_workers(workers: Sequence[WorkerHandle], grace: float) -> None:
    """Tell every worker to stop, give them ``grace`` seconds in all, then SIGKILL stragglers."""
    for handle in workers:
        send(handle, STOP)
    deadline = time.monotonic() + grace
    for handle in workers:
        handle.process.join(max(0.0, deadline - time.monotonic()))
    for handle in workers:
        if handle.process.is_alive():
            handle.process.kill()
            handle.process.join(1.0)
        close_pipes(handle)
        with contextlib.suppress(Exception):
            handle.process.close()


def close_pipes(handle: WorkerHandle) -> None:
    for conn in (handle.jobs, handle.results):
        with contextlib.suppress(OSError):
            conn.close()
