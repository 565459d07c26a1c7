"""Benchmark: crawler.http against urllib3 2.x and stdlib http.client, on a local nginx.

How this works: nginx (from the OS packages) runs with its own config in a temp dir on a free
127.0.0.1 port, one worker process, keep-alive without a practical request limit, serving a tiny
fixed response (/tiny) and a ~30 KB static page (/page). nginx is far faster than any Python
client, so what we measure is the client. Each round runs every scenario with every client, in an
order that rotates per round, and records wall time and the process CPU time (all threads) spent
on N requests; the table shows the median over the rounds. nginx is stopped by its PID at the end,
also on errors and Ctrl-C.

    python benchmarks/pool.py [--requests N] [--rounds N] [--install-nginx]

This is a benchmark, not a test: it is not run by pytest or CI. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
THREADS = 8

NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen {host}:{port};
        location = /tiny {{ default_type text/plain; return 200 "ok"; }}
        location = /page {{ default_type text/html; alias {root}/www/page.html; }}
    }}
}}
"""


def find_nginx(install: bool) -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )
    if found:
        return found
    if install:
        subprocess.run(["apt-get", "install", "-y", "nginx"], check=True)
        return find_nginx(install=False)
    sys.exit("nginx not found: run `apt-get install -y nginx` (or pass --install-nginx)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def page_html(size: int = 30 * 1024) -> bytes:
    row = "<li><a href='/item/{0}'>Item number {0}</a> with a little text around it</li>\n"
    rows, total, i = [], 0, 0
    while total < size:
        line = row.format(i)
        rows.append(line)
        total += len(line)
        i += 1
    return ("<!DOCTYPE html><html><body><ul>\n" + "".join(rows) + "</ul></body></html>\n").encode()


class Nginx:
    """nginx in the foreground (daemon off) as our child, so we hold its master's PID."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.page = page_html()

    def __enter__(self) -> Nginx:
        (self.root / "www").mkdir()
        (self.root / "tmp").mkdir()
        (self.root / "www" / "page.html").write_bytes(self.page)
        # As root the worker would drop to "nobody", who cannot read our 0700 temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, root=self.root, host=HOST, port=self.port))
        self.proc = subprocess.Popen(
            [
                self.binary,
                "-p",
                str(self.root),
                "-c",
                str(conf),
                "-e",
                str(self.root / "error.log"),
            ],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.root / 'error.log').read_text()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("nginx did not start listening within 10 s")

    def __exit__(self, *exc_info: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to the master's PID: fast shutdown of its worker
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


# -- clients: each makes (fetch(path) -> body, close()) over one fresh pool ------------------

Client = tuple[Callable[[str], bytes], Callable[[], None]]


def ours(port: int, maxsize: int) -> Client:
    from crawler.http import HTTPConnectionPool

    pool = HTTPConnectionPool(HOST, port, maxsize=maxsize, block=True)
    return (lambda path: pool.urlopen("GET", path).data), pool.close


def urllib3_pool(port: int, maxsize: int) -> Client:
    import urllib3

    pool = urllib3.HTTPConnectionPool(HOST, port, maxsize=maxsize, block=True)
    return (lambda path: pool.urlopen("GET", path).data), pool.close


def stdlib(port: int, maxsize: int) -> Client:
    # http.client has no pool: one connection per thread, the reference floor.
    local = threading.local()
    conns: list[http.client.HTTPConnection] = []

    def fetch(path: str) -> bytes:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(HOST, port)
            conns.append(conn)
        conn.request("GET", path)
        return conn.getresponse().read()

    def close() -> None:
        for conn in conns:
            conn.close()

    return fetch, close


def bare_socket(port: int, maxsize: int) -> Client:
    # The floor under any Python client: one socket per thread, a fixed request, the reply read
    # by its Content-Length (nginx's replies here are small and well-formed). Not a client.
    local = threading.local()
    socks: list[socket.socket] = []

    def fetch(path: str) -> bytes:
        entry = getattr(local, "entry", None)
        if entry is None:
            sock = socket.create_connection((HOST, port))
            socks.append(sock)
            entry = local.entry = (sock, bytearray(1 << 16), {})
        sock, buf, requests = entry
        request = requests.get(path)
        if request is None:
            request = requests[path] = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        sock.sendall(request)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += buf[: sock.recv_into(buf)]
        head = data[:end].lower()
        at = head.index(b"content-length:") + 15
        size = int(head[at : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
        while len(data) < end + 4 + size:
            data += buf[: sock.recv_into(buf)]
        return data[end + 4 : end + 4 + size]

    def close() -> None:
        for sock in socks:
            sock.close()

    return fetch, close


CLIENTS = {
    "crawler.http": ours,
    "urllib3": urllib3_pool,
    "http.client": stdlib,
    "bare socket": bare_socket,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    threads: int


SCENARIOS = [
    Scenario("tiny, 1 thread", "/tiny", 1),
    Scenario("30 KB page, 1 thread", "/page", 1),
    Scenario(f"tiny, {THREADS} threads", "/tiny", THREADS),
]


def measure(
    fetch: Callable[[str], bytes], scenario: Scenario, requests: int, expect: int
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `requests` fetches spread over the scenario's threads."""
    per_thread = requests // scenario.threads
    for _ in range(20):  # warm up: open connections, fill caches
        assert len(fetch(scenario.path)) == expect
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            path = scenario.path
            for _ in range(per_thread):
                fetch(path)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(scenario.threads)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if scenario.threads == 1:
        loop()
    else:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if failures:
        raise failures[0]
    return wall, cpu


Results = dict[tuple[str, str], list[tuple[float, float]]]


def run(nginx: Nginx, names: list[str], requests: int, rounds: int) -> Results:
    """Per (scenario, client): one (requests per second, CPU seconds per request) per round."""
    results: Results = {}
    for round_no in range(rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for scenario in SCENARIOS:
            expect = 2 if scenario.path == "/tiny" else len(nginx.page)
            for name in order:
                fetch, close = CLIENTS[name](nginx.port, scenario.threads)
                try:
                    wall, cpu = measure(fetch, scenario, requests, expect)
                finally:
                    close()
                done = requests // scenario.threads * scenario.threads
                results.setdefault((scenario.name, name), []).append((done / wall, cpu / done))
        print(f"round {round_no + 1}/{rounds} done", file=sys.stderr)
    return results


def report(results: Results, names: list[str], requests: int, rounds: int) -> bool:
    print(f"\nmedian of {rounds} rounds, {requests} requests per client per scenario\n")
    header = f"{'scenario':<22} {'client':<13} {'req/s':>9} {'CPU us/req':>11} {'vs urllib3':>18}"
    print(header)
    print("-" * len(header))
    ok = True
    for scenario in SCENARIOS:
        med = {
            name: (
                statistics.median(r for r, _ in results[(scenario.name, name)]),
                statistics.median(c for _, c in results[(scenario.name, name)]) * 1e6,
            )
            for name in names
        }
        base_rate, base_cpu = med["urllib3"]
        for name, (rate, cpu) in med.items():
            ratio = f"x{rate / base_rate:.2f} rate x{base_cpu / cpu:.2f} cpu"
            print(f"{scenario.name:<22} {name:<13} {rate:>9.0f} {cpu:>11.1f} {ratio:>18}")
        ours_rate = med["crawler.http"][0]
        if ours_rate < base_rate:
            ok = False
        print()
    tiny_rate, tiny_cpu = (
        statistics.median(r for r, _ in results[("tiny, 1 thread", "crawler.http")]),
        statistics.median(c for _, c in results[("tiny, 1 thread", "crawler.http")]) * 1e6,
    )
    u3_rate = statistics.median(r for r, _ in results[("tiny, 1 thread", "urllib3")])
    notes = []
    if ("tiny, 1 thread", "bare socket") in results:
        bare_rate = statistics.median(r for r, _ in results[("tiny, 1 thread", "bare socket")])
        notes.append(
            f"  (a bare socket loop reaches x{bare_rate / u3_rate:.2f} of urllib3's rate here:"
            " the ceiling of that ratio for any Python client on this machine right now)"
        )
    bars = [
        (f"<= 40 us CPU per tiny request (1 thread): {tiny_cpu:.1f}", tiny_cpu <= 40),
        (
            f">= 2.5x urllib3's tiny 1-thread rate: x{tiny_rate / u3_rate:.2f}",
            tiny_rate >= 2.5 * u3_rate,
        ),
        ("no row slower than urllib3", ok),
    ]
    print("the bar (issue 2):")
    for text, passed in bars:
        print(f"  [{'PASS' if passed else 'FAIL'}] {text}")
    for note in notes:
        print(note)
    return all(passed for _, passed in bars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=4000, help="requests per client per scenario and round"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--install-nginx", action="store_true", help="apt-get install nginx if missing"
    )
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset")
    args = parser.parse_args(argv)
    names = args.clients.split(",")
    if {"crawler.http", "urllib3"} - set(names) or set(names) - set(CLIENTS):
        parser.error(f"--clients must include crawler.http and urllib3, from {list(CLIENTS)}")
    binary = find_nginx(args.install_nginx)
    with Nginx(binary) as nginx:
        print(
            f"nginx {binary} (pid {nginx.proc.pid if nginx.proc else '?'}) on {HOST}:{nginx.port}",
            file=sys.stderr,
        )
        results = run(nginx, names, args.requests, args.rounds)
    return 0 if report(results, names, args.requests, args.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
