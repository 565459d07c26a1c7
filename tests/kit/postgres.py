"""A real PostgreSQL for the tests: Debian's ``initdb`` + ``pg_ctl`` into a temp dir.

``PostgresServer`` creates a cluster in a fresh directory, starts it on a free loopback port
(and a Unix socket in the same directory), and stops it (``pg_ctl stop -m immediate``) at the
end. PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to
the ``postgres`` system user (the Debian package creates it) and every server command runs
through ``runuser``. ``database()`` creates a fresh database per test and returns its
``postgresql://`` URL, so tests never see each other's rows. ``restart()`` is
``pg_ctl restart -m immediate``: the crash a node must survive.

A missing PostgreSQL is a failure, never a skip: ``.ci/run`` installs the package.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

BIN = Path(os.environ.get("CRAWLER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port``, user ``crawler`` (trust auth)."""

    def __init__(self) -> None:
        if not (BIN / "pg_ctl").exists():
            raise RuntimeError(f"PostgreSQL is not installed ({BIN}/pg_ctl missing): see .ci/run")
        self.dir = Path(tempfile.mkdtemp(prefix="crawler-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._as_root = os.getuid() == 0
        self._names = itertools.count(1)
        self.log = self.dir / "server.log"

    def _run(self, *args: str) -> None:
        cmd = [str(BIN / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # stdout to a file, not a pipe: the server pg_ctl leaves running would hold a pipe open.
        with open(self.dir / "pg_ctl.out", "ab") as out:
            subprocess.run(cmd, check=True, stdout=out, stderr=out, timeout=120)

    def start(self) -> Self:
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "crawler", "-A", "trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.dir} -c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log),
                  "-o", options)  # fmt: skip
        return self

    def restart(self) -> None:
        """``pg_ctl restart -m immediate``: every connection is cut, recovery runs."""
        self._run("pg_ctl", "restart", "-w", "-m", "immediate", "-D", str(self.data),
                  "-l", str(self.log))  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql://crawler@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://crawler@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
