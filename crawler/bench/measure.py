"""Resource measurement for benchmarks: CPU seconds and the peak RSS of a process tree.

CPU comes from ``getrusage``: ``RUSAGE_SELF`` for this process and ``RUSAGE_CHILDREN`` for the
children it has waited for (worker processes are reaped when a crawl ends), or the rusage that
``os.wait4`` returns for a subprocess, which includes the descendants *it* waited for.

Peak RSS of a tree is not something the kernel keeps (``ru_maxrss`` is the peak of the single
largest process), so :class:`TreeRSSSampler` reads ``VmRSS`` of the root and its descendants
from ``/proc`` every ``interval`` seconds in a thread and keeps the largest sum. On systems
without ``/proc`` it falls back to ``ru_maxrss``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CPUTimes",
    "TreeRSSSampler",
    "cpu_now",
    "tree_pids",
    "tree_rss",
    "tree_rss_by_pid",
]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class CPUTimes:
    """User and system seconds of this process and of its reaped children."""

    self_user: float
    self_sys: float
    children_user: float
    children_sys: float

    def __sub__(self, other: CPUTimes) -> CPUTimes:
        return CPUTimes(
            self.self_user - other.self_user,
            self.self_sys - other.self_sys,
            self.children_user - other.children_user,
            self.children_sys - other.children_sys,
        )

    @property
    def parent(self) -> float:
        return self.self_user + self.self_sys

    @property
    def children(self) -> float:
        return self.children_user + self.children_sys

    @property
    def total(self) -> float:
        return self.parent + self.children


def cpu_now() -> CPUTimes:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CPUTimes(me.ru_utime, me.ru_stime, kids.ru_utime, kids.ru_stime)


def _children_by_scan() -> Callable[[int], list[int]]:
    """Every process's children, from one pass over every process's ``stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = (_PROC / entry.name / "stat").read_bytes()
        except OSError:
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return lambda pid: children.get(pid, [])


def _children(pid: int) -> list[int]:
    """``pid``'s children, from each of its threads' ``children`` file (a child is listed
    under the thread that started it)."""
    found: list[int] = []
    try:
        tasks = os.listdir(_PROC / str(pid) / "task")
    except OSError:
        return found  # gone
    for tid in tasks:
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            found += map(int, (_PROC / str(pid) / "task" / tid / "children").read_bytes().split())
    return found


# Linux without CONFIG_PROC_CHILDREN has no children files: scan every process instead.
_HAS_CHILDREN_FILES = (_PROC / "self" / "task" / str(os.getpid()) / "children").exists()


def _walk(root: int, exclude: frozenset[int], children_of: Callable[[int], list[int]]) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        found.append(pid)
        todo.extend(children_of(pid))
    return found


def tree_pids(root: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """``root`` and its descendants, leaving out the subtrees of the ``exclude`` PIDs.

    Read from the tree's own ``children`` files: a handful of reads a sample, where scanning
    every process's ``stat`` (the fallback) costs the sampler a few milliseconds on a busy
    machine, 20 times a second, taken from the two cores it measures (about 0.05 of a core).
    """
    if not _HAS_CHILDREN_FILES:
        return _tree_pids_by_scan(root, exclude)
    return _walk(root, exclude, _children)


def _tree_pids_by_scan(root: int, exclude: frozenset[int]) -> list[int]:
    return _walk(root, exclude, _children_by_scan())


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def _rss_kb(pid: int) -> int:
    # statm's second field is VmRSS in pages: one short line, where status is fifty.
    try:
        fields = (_PROC / str(pid) / "statm").read_bytes().split()
        return int(fields[1]) * _PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0  # gone


def _open_files(pid: int) -> int:
    try:
        return len(os.listdir(_PROC / str(pid) / "fd"))
    except OSError:
        return 0  # gone


def tree_rss(root: int, exclude: frozenset[int] = frozenset()) -> int:
    """Bytes resident now, summed over ``root``'s process tree."""
    return sum(tree_rss_by_pid(root, exclude).values())


def tree_rss_by_pid(root: int, exclude: frozenset[int] = frozenset()) -> dict[int, int]:
    """Bytes resident now for each process of ``root``'s tree."""
    return {pid: 1024 * _rss_kb(pid) for pid in tree_pids(root, exclude)}


class TreeRSSSampler:
    """Samples a process tree's summed RSS in a daemon thread; a context manager.

    ``peak`` is in bytes; ``peak_by_pid`` shows how that peak was split among the processes
    (the root first). ``exclude`` holds PIDs whose subtrees are not counted (a site server that
    is a child of the measured process). With ``count_files`` it also keeps ``peak_files``, the
    most file descriptors the tree held open at once (a listing per process and sample, so
    only the benchmarks that report it pay for it).
    """

    def __init__(
        self,
        root: int | None = None,
        interval: float = 0.05,
        exclude: frozenset[int] = frozenset(),
        *,
        count_files: bool = False,
    ) -> None:
        self.root = os.getpid() if root is None else root
        self.interval = interval
        self.exclude = exclude
        self.count_files = count_files
        self.peak = 0
        self.peak_files = 0
        self.peak_by_pid: dict[int, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = _PROC.is_dir()

    def __repr__(self) -> str:
        return f"<TreeRSSSampler root={self.root} peak={self.peak >> 20}MB samples={self.samples}>"

    def sample(self) -> int:
        if not self._proc:
            return 0
        parts = tree_rss_by_pid(self.root, self.exclude)
        rss = sum(parts.values())
        self.samples += 1
        if rss > self.peak:
            self.peak, self.peak_by_pid = rss, parts
        if self.count_files:
            self.peak_files = max(self.peak_files, sum(map(_open_files, parts)))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._proc and self.root == os.getpid():
            # No /proc: the best we have is the largest single process.
            scale = 1 if sys.platform == "darwin" else 1024
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
                self.peak = max(self.peak, resource.getrusage(who).ru_maxrss * scale)
        return self.peak

    def __enter__(self) -> TreeRSSSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
