"""Serve a generated site on loopback: nginx when it is installed, else a small Python server.

Both run as a child process that :class:`SiteServer` starts, waits for (every origin accepts a
connection) and stops by its PID, so the crawler under test never shares a process, and so a
GIL, with the server.

- **nginx**: a config of our own in a temporary directory (one ``server`` block per host,
  ``worker_processes 1`` so the crawler keeps the other core, keep-alive, ``access_log off``,
  pid file, error log and temp paths all inside that directory), run in the foreground with
  ``daemon off``. SIGQUIT would wait for idle keep-alive clients; we send SIGTERM (fast exit).
  Origins named by a host name rather than an address (``http://h7.wide.test:41234``, a
  broad crawl's thousands of hosts) are served by name on ``127.0.0.1``: one ``server``
  block per port, its root looked up by the ``Host`` header; the crawler dials them through
  its ``resolve`` setting.
- **python**: ``python -m crawler.bench.pyserver`` loads every file into memory as a complete
  ready-to-send response and answers HTTP/1.1 with keep-alive from one asyncio loop. It is
  not ``http.server``: that parses each request's headers through the ``email`` package and
  would cap the benchmark at the server's speed rather than the crawler's.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from crawler.bench.site import SiteInfo
from crawler.errors import ServerError

__all__ = ["SiteServer", "find_nginx", "nginx_config"]

_NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx")


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in _NGINX_PATHS if os.access(p, os.X_OK)), None)


def _nginx_version(nginx: str) -> tuple[int, ...]:
    try:
        done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    return tuple(int(g) for g in match.groups()) if match else ()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _dial(origin: str) -> tuple[str, int]:
    """Where the server of ``origin`` listens: a host served by name is on 127.0.0.1."""
    host, port = _address(origin)
    return (host, port) if _is_address(host) else ("127.0.0.1", port)


def _address(origin: str) -> tuple[str, int]:
    parts = urlsplit(origin)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"origin needs a host and a port: {origin!r}")
    return parts.hostname, parts.port


def nginx_config(site: SiteInfo, workdir: Path, workers: int = 1) -> str:
    """An nginx.conf serving ``site`` with everything nginx writes kept inside ``workdir``."""
    user = ""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root, nginx's workers would switch to "nobody"; stay root so a private temp
        # directory stays readable. Loopback only, and stopped at the end of the run.
        user = "user root;\n"
    servers = []
    named: dict[int, list[str]] = {}  # port -> "name dir;" lines of the hosts served by name
    for i, origin in enumerate(site.origins):
        host, port = _address(origin)
        if not _is_address(host):
            named.setdefault(port, []).append(f"        {host} {site.host_dir(i)};\n")
            continue
        servers.append(
            f"    server {{\n"
            f"        listen {host}:{port};\n"
            f"        root {site.host_dir(i)};\n"
            f"        location / {{ }}\n"
            f"    }}\n"
        )
    for port, lines in named.items():
        # Thousands of names on one port: one server block whose root is looked up by the
        # Host header (a hash map), not one block per name.
        servers.append(
            f"    map $host $root_{port} {{\n        hostnames;\n"
            f"        default {workdir / 'none'};\n{''.join(lines)}    }}\n"
            f"    server {{\n"
            f"        listen 127.0.0.1:{port};\n"
            f"        root $root_{port};\n"
            f"        location / {{ }}\n"
            f"    }}\n"
        )
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    temp_lines = "".join(f"    {name}_temp_path {path};\n" for name, path in temp.items())
    return (
        f"{user}worker_processes {workers};\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    tcp_nodelay on;\n"
        "    keepalive_timeout 120s;\n"
        "    keepalive_requests 1000000;\n"
        "    types { text/html html; text/plain txt; }\n"
        "    default_type application/octet-stream;\n"
        "    charset utf-8;\n"
        "    server_tokens off;\n"
        "    map_hash_max_size 262144;\n"
        "    map_hash_bucket_size 128;\n"
        f"{temp_lines}" + "".join(servers) + "}\n"
    )


class SiteServer:
    """A child process serving ``site``; a context manager. ``backend``: auto, nginx, python."""

    def __init__(self, site: SiteInfo, backend: str = "auto", *, nginx_workers: int = 1) -> None:
        if backend not in ("auto", "nginx", "python"):
            raise ValueError(f"unknown server backend {backend!r} (auto, nginx, python)")
        nginx = find_nginx()
        if backend == "nginx" and nginx is None:
            raise ServerError("nginx is not installed (apt-get install -y nginx)")
        self.site = site
        self.backend = "nginx" if backend != "python" and nginx is not None else "python"
        self._nginx = nginx
        self._nginx_workers = nginx_workers
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self._proc is not None else "stopped"
        return f"<SiteServer {self.backend} {self.site.hosts} hosts {state}>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> SiteServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> None:
        if self._proc is not None:
            raise ServerError("already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="crawler-bench-server-"))
        if self.backend == "nginx":
            assert self._nginx is not None
            conf = self._workdir / "nginx.conf"
            conf.write_text(nginx_config(self.site, self._workdir, self._nginx_workers))
            cmd = [self._nginx, "-p", str(self._workdir), "-c", str(conf), "-g", "daemon off;"]
            if _nginx_version(self._nginx) >= (1, 19, 5):
                # -e: not even the start-up log goes to /var/log, which a non-root user
                # cannot open (older nginx only warns about it).
                cmd[1:1] = ["-e", str(self._workdir / "error.log")]
        else:
            if not all(_is_address(_address(o)[0]) for o in self.site.origins):
                raise ServerError("hosts served by name need nginx (apt-get install -y nginx)")
            cmd = [sys.executable, "-m", "crawler.bench.pyserver", str(self.site.root)]
            cmd += list(self.site.origins)
        log = open(self._workdir / "server.log", "wb")  # noqa: SIM115 - the child keeps it
        try:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        pending = sorted({_dial(o) for o in self.site.origins})
        while pending:
            if self._proc.poll() is not None:
                raise ServerError(f"{self.backend} server exited early: {self._log_tail()}")
            try:
                with socket.create_connection(pending[0], timeout=1.0):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"{self.backend} server not ready after {timeout}s")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        text = ""
        for name in ("server.log", "error.log"):
            path = self._workdir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text[-2000:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
