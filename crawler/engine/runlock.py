"""One run per database at a time: an exclusive ``flock`` on ``<db>.lock``.

How this works: :meth:`RunLock.acquire` opens (creating it if needed) the file next to the
database and asks the kernel for an exclusive, non-blocking ``flock``. The kernel drops that
lock when the holder's file descriptor is closed, which happens however the process ends,
``kill -9`` included; so a lock "left by a dead process" is simply free, and taking it over
needs no pid checks or timeouts. The holder writes ``{"pid": ..., "started_at": ...}`` into
the file only so that a second run can say who is in the way (:class:`LockedError`).

The file is never deleted: unlinking a lock file while another process has it open lets two
processes each lock a different inode, and both would think they hold "the" lock.

A child started with ``fork`` inherits the descriptor, and an ``flock`` lasts until every
copy of it is closed: a worker that outlived a killed parent would keep the database locked.
So every held lock registers itself, and an ``os.register_at_fork`` hook closes the child's
copy right after each fork. Closing a copy never releases the parent's lock (only the last
copy, or ``LOCK_UN``, does), and the child never calls ``LOCK_UN`` or truncates the file.
(``O_CLOEXEC`` covers ``exec``.)

Raises :class:`~crawler.errors.LockedError` (another live process holds the lock: exit code
75) and :class:`~crawler.errors.LockFileError` (the lock file cannot be created: folder,
permissions).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from crawler.errors import LockedError, LockFileError

__all__ = ["RunLock", "lock_path"]


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    """The lock file of a database: ``data/news.db`` -> ``data/news.db.lock``."""
    db = Path(db_path)
    return db.with_name(db.name + ".lock")


def _read_holder(fd: int) -> tuple[int | None, float | None]:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
        pid, since = info.get("pid"), info.get("started_at")
        return (
            pid if isinstance(pid, int) else None,
            float(since) if isinstance(since, int | float) else None,
        )
    except (OSError, ValueError, AttributeError):
        return None, None  # being written right now, or not ours: say "another process"


class RunLock:
    """The run lock of one database. Use as a context manager, or ``acquire()``/``release()``."""

    def __init__(self, db_path: str | os.PathLike[str], *, clock: Any = time.time) -> None:
        self.path = lock_path(db_path)
        self._clock = clock
        self._fd: int | None = None
        self.started_at: float | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fileno(self) -> int | None:
        return self._fd

    def acquire(self) -> None:
        """Take the lock at once or raise :class:`LockedError`; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockFileError(
                f"cannot create the lock file {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, since = _read_holder(fd)
            os.close(fd)
            raise LockedError(self.path, pid, since) from None
        except BaseException:
            os.close(fd)
            raise
        self.started_at = float(self._clock())
        record = json.dumps({"pid": os.getpid(), "started_at": self.started_at}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
        self._fd = fd
        _HELD.add(self)

    def release(self) -> None:
        """Give the lock back (idempotent). The file stays, emptied."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = f"held since {self.started_at}" if self.held else "free"
        return f"<RunLock {self.path} {state}>"


# Locks held by this process, so a forked child can drop its copies (see the module docs).
_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


def _close_in_child() -> None:
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # only this copy: the parent keeps its lock
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)
