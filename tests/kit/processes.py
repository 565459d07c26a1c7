"""Looking at other processes from a test: a fresh interpreter's output, a process's children.

``python_output(code)`` runs ``code`` in a new interpreter whose ``hash()`` salt differs from
ours, for values that must agree across processes (fingerprints, host routing).
``child_pids(pid)`` reads a process's children from /proc: a crawl's workers are the children
of its parent process.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

__all__ = ["child_pids", "python_output"]


def python_output(code: str) -> list[str]:
    """The words ``code`` prints in a fresh interpreter with PYTHONHASHSEED=123."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout.split()


def child_pids(pid: int) -> set[int]:
    """The children of ``pid`` (every thread's list, from /proc); a thread may exit meanwhile."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out |= {int(p) for p in (task / "children").read_text().split()}
    return out


def start_crawl(spider: Path, db: str, start: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -m crawler run SPIDER --db DB`` in its own session, as cron would start it."""
    from tests.kit.project import subprocess_env

    return subprocess.Popen(
        [sys.executable, "-m", "crawler", "run", str(spider), "--db", db, "-q",
         "-a", f"start_urls={start}", *args],
        cwd=spider.parent, env=subprocess_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
