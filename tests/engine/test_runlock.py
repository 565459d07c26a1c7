"""crawler.engine.runlock: in-process behaviour, and real processes holding and losing the lock."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.engine.runlock import RunLock, lock_path
from crawler.errors import EXIT_LOCKED, LockedError, LockFileError

HOLDER = """
import sys, time
from crawler.engine.runlock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""

TRY = """
import sys
from crawler.engine.runlock import RunLock
from crawler.errors import LockedError
try:
    with RunLock(sys.argv[1]):
        print("acquired", flush=True)
except LockedError as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_lock_path_sits_next_to_the_db(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "news.db") == tmp_path / "news.db.lock"
    assert lock_path("data/x.db") == Path("data/x.db.lock")


def test_acquire_release_and_reacquire(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "news.db"
    lock = RunLock(db, clock=lambda: 1234.5)
    assert repr(lock).endswith("free>")
    with lock:
        assert lock.held
        info = json.loads(lock.path.read_text())
        assert info == {"pid": os.getpid(), "started_at": 1234.5}
        assert "held since 1234.5" in repr(lock)
    assert not lock.held and lock.path.exists() and lock.path.read_text() == ""
    lock.release()  # idempotent
    with RunLock(db):
        pass


def test_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "news.db"
    with RunLock(db, clock=lambda: 1000.0):
        with pytest.raises(LockedError) as info:
            RunLock(db).acquire()
        err = info.value
        assert (err.holder_pid, err.since, err.exit_code) == (os.getpid(), 1000.0, EXIT_LOCKED)
        assert f"pid {os.getpid()}" in str(err) and str(lock_path(db)) in str(err)
        assert pickle.loads(pickle.dumps(err)).holder_pid == os.getpid()


def test_acquire_twice_on_one_object_is_a_bug(tmp_path: Path) -> None:
    with RunLock(tmp_path / "db") as lock, pytest.raises(RuntimeError, match="already held"):
        lock.acquire()


def test_unreadable_holder_info_still_reports_locked(tmp_path: Path) -> None:
    db = tmp_path / "news.db"
    with RunLock(db) as lock:
        assert lock.fileno is not None
        os.pwrite(lock.fileno, b"garbage", 0)
        with pytest.raises(LockedError, match="another process") as info:
            RunLock(db).acquire()
        assert info.value.holder_pid is None


def _run(code: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=30
    )


def _start_holder(db: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.timeout(60)
def test_other_process_fails_fast_then_takes_over_after_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "news.db"
    holder = _start_holder(db)
    try:
        started = time.monotonic()
        second = _run(TRY, db)
        assert second.returncode == EXIT_LOCKED
        assert f"pid {holder.pid}" in second.stderr
        assert time.monotonic() - started < 10  # fails at once, no waiting on the lock
        with pytest.raises(LockedError):
            RunLock(db).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # The kernel released the dead holder's lock; its stale pid is simply overwritten.
        third = _run(TRY, db)
        assert third.returncode == 0 and third.stdout.strip() == "acquired"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()


@pytest.mark.timeout(60)
def test_lock_freed_by_clean_exit(tmp_path: Path) -> None:
    db = tmp_path / "news.db"
    holder = _start_holder(db)
    try:
        holder.terminate()
        holder.wait(timeout=10)
        with RunLock(db) as lock:
            assert lock.held
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()


@pytest.mark.timeout(30)
def test_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "news.db"
    lock = RunLock(db)
    lock.acquire()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the descriptor was closed by the at-fork hook
        try:
            os.close(read_end)
            held = lock.held or any(
                os.path.realpath(f"/proc/self/fd/{fd}") == str(lock.path)
                for fd in os.listdir("/proc/self/fd")
            )
            os.write(write_end, b"held" if held else b"free")
            time.sleep(5)  # outlives the parent's lock
        finally:
            os._exit(0)
    try:
        os.close(write_end)
        assert os.read(read_end, 4) == b"free"
        assert lock.held  # closing the child's copy did not release ours
        with pytest.raises(LockedError):
            RunLock(db).acquire()
        lock.release()
        with RunLock(db) as again:  # the child is still alive and holds nothing
            assert again.held
    finally:
        os.close(read_end)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_lock_file_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LockFileError, match="cannot create the lock file"):
        RunLock(blocker / "sub" / "news.db").acquire()
