"""crawler.bench (``crawler bench``): the site generator, its servers, measurement, run_bench."""

from __future__ import annotations

import http.client
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from crawler import bench as benchsite
from crawler.bench import server as server_module
from crawler.bench.measure import TreeRSSSampler, _tree_pids_by_scan, cpu_now, tree_pids
from crawler.bench.server import SiteServer, find_nginx, nginx_config
from crawler.bench.site import SiteInfo, generate_site, pick_origins, worker_split
from crawler.errors import ServerError

ORIGINS = ("http://127.0.0.1:8001", "http://127.0.0.2:8002", "http://127.0.0.3:8003")
HREF = re.compile(r'href="([^"]*)"')


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.html")}


def _links(site: SiteInfo, page: int) -> set[str]:
    base = site.url(page)
    text = site.path(page).read_text()
    return {urldefrag(urljoin(base, href))[0] for href in HREF.findall(text)}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SiteInfo:
    root = tmp_path_factory.mktemp("site")
    return generate_site(root, 240, 3, seed=7, origins=ORIGINS)


def test_same_seed_gives_the_same_files(tmp_path: Path) -> None:
    a = generate_site(tmp_path / "a", 50, 2, seed=3, origins=ORIGINS[:2])
    b = generate_site(tmp_path / "b", 50, 2, seed=3, origins=ORIGINS[:2])
    c = generate_site(tmp_path / "c", 50, 2, seed=4, origins=ORIGINS[:2])
    assert _files(a.root) == _files(b.root)
    assert len(_files(a.root)) == 50
    assert _files(a.root) != _files(c.root)
    assert (a.total_bytes, a.total_links) == (b.total_bytes, b.total_links)


def test_every_page_is_reachable_from_the_start_pages(site: SiteInfo) -> None:
    index = {url: n for n, url in enumerate(site.urls())}
    seen = set(site.start_urls)
    todo = deque(site.start_urls)
    while todo:
        for url in _links(site, index[todo.popleft()]):
            if url in index and url not in seen:
                seen.add(url)
                todo.append(url)
    assert seen == set(index)


def test_sizes_links_and_titles_are_within_bounds(site: SiteInfo) -> None:
    pages = set(site.urls())
    for n in range(site.pages):
        body = site.path(n).read_bytes()
        assert 20 * 1024 <= len(body) <= 60 * 1024, n
        assert body.count(b"<title>") == 1 and f"({n})</title>".encode() in body
        targets = _links(site, n) & pages
        targets.discard(site.url(n))
        nav = len(site.start_urls)
        assert 50 <= len(targets) <= 200 + nav, (n, len(targets))


def test_links_are_relative_on_the_same_host_and_absolute_across(site: SiteInfo) -> None:
    hrefs = HREF.findall(site.path(5).read_text())
    own = site.origins[5 % site.hosts]
    assert not any(h.startswith(own) for h in hrefs)  # same host: always relative
    assert any(h.startswith("/p/") for h in hrefs)
    assert any(re.fullmatch(r"\d+\.html", h) for h in hrefs)
    others = [h for h in hrefs if h.startswith("http://")]
    assert others and all(urlsplit(h).netloc != urlsplit(own).netloc for h in others)


def test_extra_links_point_at_distinct_unserved_urls(tmp_path: Path) -> None:
    s = generate_site(tmp_path, 20, 2, seed=1, origins=ORIGINS[:2], extra_links=30)
    assert s.discoverable == 20 * 31
    extra = {u for n in range(20) for u in _links(s, n) if "/x/" in u}
    assert len(extra) == 20 * 30


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_site(tmp_path, 1, 2, seed=1)
    with pytest.raises(ValueError):
        generate_site(tmp_path, 10, 2, seed=1, origins=ORIGINS)
    with pytest.raises(ValueError):
        generate_site(tmp_path, 10, 2, seed=1, min_kb=5, max_kb=4)


def test_pick_origins_gives_distinct_host_keys() -> None:
    origins = pick_origins(4)
    assert len({urlsplit(o).netloc for o in origins}) == 4
    assert all(urlsplit(o).hostname.startswith("127.") for o in origins)  # type: ignore[union-attr]


@pytest.mark.parametrize(("hosts", "workers"), [(4, 2), (3, 2), (6, 3)])
def test_pick_origins_can_spread_hosts_evenly_over_workers(hosts: int, workers: int) -> None:
    split = worker_split(pick_origins(hosts, balance_over=workers), workers)
    assert sum(split) == hosts and max(split) - min(split) <= 1


def test_nginx_config_keeps_everything_in_its_directory(site: SiteInfo, tmp_path: Path) -> None:
    conf = nginx_config(site, tmp_path)
    assert conf.count("server {") == site.hosts
    for i, origin in enumerate(site.origins):
        assert f"listen {urlsplit(origin).netloc};" in conf
        assert f"root {site.host_dir(i)};" in conf
    for directive in ("access_log off;", "worker_processes 1;", f"pid {tmp_path}/nginx.pid;"):
        assert directive in conf


def _get(conn: http.client.HTTPConnection, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read()
    assert not response.will_close
    return response.status, body


def _served_site(tmp_path: Path) -> SiteInfo:
    return generate_site(tmp_path, 12, 2, seed=2, origins=pick_origins(2))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["python", "nginx"])
def test_server_serves_pages_with_keep_alive(tmp_path: Path, backend: str) -> None:
    # nginx is an OS package (.ci/run installs it): missing, this test fails rather than skips.
    assert backend == "python" or find_nginx() is not None, "nginx is not installed"
    site = _served_site(tmp_path)
    with SiteServer(site, backend) as server:
        assert server.backend == backend and "pid" in repr(server)
        address = urlsplit(site.origins[1])
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
        try:
            status, body = _get(conn, "/p/1.html")
            sock = conn.sock
            assert status == 200 and body == site.path(1).read_bytes()
            status, body = _get(conn, "/p/3.html")
            assert status == 200 and body == site.path(3).read_bytes()
            assert _get(conn, "/p/2.html")[0] == 404  # page 2 lives on the other host
            assert _get(conn, "/p/5.html", "HEAD") == (200, b"")
            assert conn.sock is sock  # one connection for all four requests
        finally:
            conn.close()
        pid = server.pid
    assert server.pid is None and "stopped" in repr(server)
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


@pytest.mark.timeout(30)
def test_python_server_closes_when_asked(tmp_path: Path) -> None:
    site = _served_site(tmp_path)
    with SiteServer(site, "python"):
        address = urlsplit(site.origins[0])
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
        try:
            conn.request("GET", "/p/0.html", headers={"Connection": "close"})
            response = conn.getresponse()
            assert response.status == 200 and response.will_close
            response.read()
        finally:
            conn.close()


def test_unknown_backend_is_rejected(site: SiteInfo) -> None:
    with pytest.raises(ValueError):
        SiteServer(site, "apache")


def test_without_nginx_auto_falls_back_to_python(
    site: SiteInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "find_nginx", lambda: None)
    assert SiteServer(site, "auto").backend == "python"
    with pytest.raises(ServerError, match="apt-get install"):
        SiteServer(site, "nginx")


@pytest.mark.timeout(30)
def test_tree_sampler_counts_child_processes() -> None:
    code = "x = bytearray(80_000_000); import time; time.sleep(2)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        sampler = TreeRSSSampler(interval=0.02)
        with sampler:
            time.sleep(0.8)
        without = TreeRSSSampler(interval=0.02, exclude=frozenset({child.pid}))
        with without:
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    assert sampler.peak >= without.peak + 70_000_000
    assert sampler.peak_by_pid.get(child.pid, 0) >= 70_000_000
    assert child.pid not in without.peak_by_pid
    assert sampler.samples > 5
    before = cpu_now()
    assert (cpu_now() - before).total >= 0


def test_tree_pids_finds_grandchildren_and_children_forked_by_other_threads() -> None:
    # Read from the tree's own /proc children files, one per thread: a child started by a
    # thread other than the main one is listed under that thread only.
    kids: list[subprocess.Popen[bytes]] = []
    grand = subprocess.Popen(["bash", "-c", "sleep 5 & sleep 5 & wait"])
    kids.append(grand)
    started, checked = threading.Event(), threading.Event()

    def start_and_stay() -> None:  # a thread that ends hands its children to another
        kids.append(subprocess.Popen(["sleep", "5"]))
        started.set()
        checked.wait(10)

    thread = threading.Thread(target=start_and_stay)
    thread.start()
    started.wait(10)
    try:
        deadline = time.monotonic() + 5
        while len(tree_pids(grand.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        mine = tree_pids(os.getpid())
        assert sorted(tree_pids(grand.pid)) == sorted(_tree_pids_by_scan(grand.pid, frozenset()))
        assert len(tree_pids(grand.pid)) == 3
        assert {k.pid for k in kids} <= set(mine)
        assert set(tree_pids(grand.pid)) <= set(mine)
        assert grand.pid not in tree_pids(os.getpid(), exclude=frozenset({grand.pid}))
    finally:
        checked.set()
        thread.join()
        for k in kids:
            k.kill()
            k.wait()


def test_public_api() -> None:
    for name in benchsite.__all__:
        assert hasattr(benchsite, name), name
    assert benchsite.BenchSpider.name == "bench"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_bench_crawls_every_page_once(tmp_path: Path) -> None:
    lines = io.StringIO()
    db = tmp_path / "kept.db"
    report = benchsite.run_bench(
        pages=60,
        hosts=2,
        workers=2,
        server="python",
        out=lambda s: print(s, file=lines),
        db_path=db,
    )
    assert report["pages"] == 60, lines.getvalue()
    assert report["items"] == 60
    assert report["ok"], lines.getvalue()
    assert report["missing"] == report["duplicates"] == 0
    assert report["server"] == "python"
    assert "pages/s" in lines.getvalue()
    assert report["db"] == str(db) and db.exists()  # a database asked for by path is kept
