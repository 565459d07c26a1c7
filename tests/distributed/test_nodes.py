"""Several ``crawler run`` processes on one PostgreSQL run: joining, host leases, takeover.

Each node is its own process tree (``python -m crawler run ... --db URL`` in a new session,
as cron or systemd would start it, with 2 workers). The site is 60 hosts on loopback ports;
every host counts the requests it is serving at once, so the test sees the per-host limit as
the server does, across nodes. One host's robots.txt says ``Crawl-delay: 1``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.kit.crawl import rows
from tests.kit.postgres import PostgresServer
from tests.kit.processes import start_crawl
from tests.kit.site import Reply, Site

pytestmark = [pytest.mark.slow]

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


def finish(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[tuple[int, str]]:
    out = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            _o, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
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


@pytest.mark.timeout(150)
def test_three_nodes_share_one_run_with_global_per_host_limit_and_crawl_delay(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site)
    nodes = [start_node(tmp_path, db, mesh.start, "lease_ttl=3") for _ in range(3)]
    results = finish(nodes, 120)
    for code, err in results:
        assert code == 0, err
    assert_stored_once(db, mesh.total)
    # Fetched once each: no host was held by two nodes, no URL handed out twice.
    hits = mesh.page_hits()
    assert sorted(set(hits.values())) == [1], [k for k, v in hits.items() if v > 1]
    assert max(mesh.max_busy.values()) <= PER_HOST, mesh.max_busy.most_common(3)
    times = mesh.times(mesh.hosts[0])  # robots.txt included: a request start too
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Starts are spaced on the engine's clock when it dispatches; arrivals carry a little
    # jitter (the same slack as tests/e2e/test_robots_crawl.py's single-node check).
    assert len(gaps) >= PAGES - 1 and min(gaps) >= 0.9, gaps
    # One run, three nodes that each did part of it; the run's stats sum them.
    (run_id, code, stats), *more = rows(db, "SELECT id, exit_code, stats FROM runs")
    assert more == [] and code == 0
    per_node = rows(db, "SELECT pages, state, exit_code FROM nodes WHERE run_id = ?", run_id)
    assert len(per_node) == 3 and all(s == "done" and c == 0 for _p, s, c in per_node)
    assert sum(p for p, _s, _c in per_node) == mesh.total
    assert all(p > 0 for p, _s, _c in per_node), per_node
    assert json.loads(stats)["pages"] == mesh.total and json.loads(stats)["nodes"] == 3


@pytest.mark.timeout(240)
def test_kill_9_of_one_node_the_others_take_its_hosts_over_and_finish(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site, delay=0.1)
    nodes = [start_node(tmp_path, db, mesh.start, "lease_ttl=2") for _ in range(3)]
    victim = nodes[0]
    deadline = time.monotonic() + 60
    while stored(db) < mesh.total // 5:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)  # the node's whole process tree
    victim.communicate(timeout=10)
    killed_at = time.time()
    results = finish(nodes[1:], 200)
    for code, err in results:
        assert code == 0, err
    assert_stored_once(db, mesh.total)
    # At least once: only what the dead node had in flight was fetched again, after the
    # takeover (never two owners at once).
    hits = mesh.page_hits()
    again = [k for k, v in hits.items() if v > 1]
    assert all(v <= 2 for v in hits.values())
    assert len(again) <= 2 * 2 * PER_HOST * 3, again  # bounded by what it could hold
    assert max(mesh.max_busy.values()) <= PER_HOST
    (code, reason), *more = rows(db, "SELECT exit_code, finish_reason FROM runs")
    assert more == [] and code == 0, reason
    states = dict(rows(db, "SELECT pid, state FROM nodes"))
    assert states[victim.pid] == "dead" and time.time() > killed_at


@pytest.mark.timeout(60)
def test_a_node_of_another_spider_is_refused_while_a_run_lives(
    site: Site, tmp_path: Path, postgres: PostgresServer
) -> None:
    db = postgres.database()
    mesh = Mesh(site, delay=0.1)
    node = start_node(tmp_path, db, mesh.start)
    try:
        deadline = time.monotonic() + 30
        while stored(db) < 5:
            assert time.monotonic() < deadline and node.poll() is None
            time.sleep(0.05)
        other = tmp_path / "other"
        other.mkdir()
        (other / "mesh.py").write_text(SPIDER.replace('"mesh"', '"other"'))
        proc = start_node(other, db, mesh.start)
        ((code, err),) = finish([proc], 30)
        assert code == 75, err
        assert f"pid {node.pid}" in err
    finally:
        os.killpg(node.pid, signal.SIGKILL)
        node.communicate(timeout=10)
