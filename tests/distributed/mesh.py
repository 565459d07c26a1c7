"""The loopback site and the node processes the distributed tests share.

``Mesh``: 60 hosts on 127.0.0.2 ports (plus a start page linking them all), six pages each,
every host counting the requests it is serving at once so a test sees the per-host limit as
the server does; host 0's robots.txt says ``Crawl-delay: 1``. ``start_node`` starts one node
(``python -m crawler run ... --db URL`` in a new session, as cron or systemd would, with 2
workers); ``finish`` waits for nodes (killing every one if any overstays), ``stored`` counts
pages while the schema may not exist yet, ``assert_stored_once`` checks a finished run's rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from tests.kit.crawl import rows
from tests.kit.processes import start_crawl
from tests.kit.site import Reply, Site

HOSTS = 60
PAGES = 6  # per host: /p0 links to /p1../p5, each links home
PER_HOST = 2
SPIDER = """
from crawler.spider import Spider

class Mesh(Spider):
    name = "mesh"

    def parse(self, response):
        yield {"url": response.url}
        yield from response.links()
"""


class Mesh:
    """60 hosts, each counting its requests in progress; host 0 is the slow Crawl-delay one."""

    def __init__(self, site: Site, delay: float = 0.02) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.busy: Counter[str] = Counter()
        self.max_busy: Counter[str] = Counter()
        self.hosts: list[str] = []
        for i in range(HOSTS):
            routes: dict[str, object] = {"*": self.route(i)}
            if i == 0:
                routes["/robots.txt"] = (200, {}, "User-agent: *\nCrawl-delay: 1\n")
            self.hosts.append(site.add_host("127.0.0.2", routes))  # type: ignore[arg-type]
        self.site = site
        links = "".join(f'<a href="http://{h}/p0">{h}</a>' for h in self.hosts)
        self.start_host = site.add_host("127.0.0.2", {"/": f"<html><body>{links}</body></html>"})

    @property
    def start(self) -> str:
        return f"http://{self.start_host}/"

    @property
    def total(self) -> int:
        return HOSTS * PAGES + 1

    def route(self, i: int) -> object:
        def serve(path: str) -> Reply:
            host = self.hosts[i]
            with self.lock:
                self.busy[host] += 1
                self.max_busy[host] = max(self.max_busy[host], self.busy[host])
            try:
                time.sleep(self.delay)
                n = int(path.strip("/p") or 0) if path.startswith("/p") else -1
                if n == 0:
                    links = "".join(f'<a href="/p{j}">{j}</a>' for j in range(1, PAGES))
                elif 0 < n < PAGES:
                    links = '<a href="/p0">home</a>'
                else:
                    return 404, {}, "no"
                return 200, {}, f"<html><body>{links}</body></html>"
            finally:
                with self.lock:
                    self.busy[host] -= 1

        return serve

    def page_hits(self) -> Counter[tuple[str, str]]:
        return Counter({k: v for k, v in self.site.hits.items() if k[1] != "/robots.txt"})

    def times(self, host: str) -> list[float]:
        return sorted(t for h, _p, _h, t in list(self.site.requests) if h == host)


def start_node(folder: Path, db: str, start: str, *settings: str) -> subprocess.Popen[bytes]:
    spider = folder / "mesh.py"
    if not spider.exists():
        spider.write_text(SPIDER)
    args = ["-s", "workers=2", "-s", f"per_host={PER_HOST}", "-s", "timeout=5"]
    for s in settings:
        args += ["-s", s]
    return start_crawl(spider, db, start, *args)


def kill_left(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL the whole tree of every node still running (resumed first, if stopped), and
    reap them: a killed node left unreaped stays this process's child (a zombie), which later
    tests that look at our children (``child_pids``) would take for one of their own."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGCONT)
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=30)


def finish(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[tuple[int, str]]:
    out = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            _o, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_left(procs)
            raise
        out.append((int(proc.returncode), err.decode(errors="replace")))
    return out


def stored(db: str) -> int:
    try:
        return int(rows(db, "SELECT count(*) FROM pages")[0][0])
    except Exception:  # the schema is not there yet
        return 0


def assert_stored_once(db: str, total: int) -> None:
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(total, total)]
    assert rows(db, "SELECT count(*), count(DISTINCT page_url) FROM items") == [(total, total)]
    assert rows(db, "SELECT state, count(*) FROM frontier GROUP BY state") == [("done", total)]
