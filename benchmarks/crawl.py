"""Crawl a generated local site with this engine and with Scrapy; compare speed, CPU and memory.

A benchmark, not a test (CI does not run it). See ``benchmarks/README-crawl.md``. In short::

    python benchmarks/crawl.py                   # 5,000 pages over 4 hosts, 3 interleaved rounds
    python benchmarks/crawl.py --memory-scale    # peak RSS at ~100k vs ~1M discovered URLs
    python benchmarks/crawl.py --site /usr/share/doc/python3.11/html   # a real site (nginx)
    python benchmarks/crawl.py --site DIR --site DIR2                  # two sites, one crawl

With ``--site DIR`` (repeatable) each directory is one host served by nginx on its own
loopback address; both crawlers start at its ``index.html`` and follow every same-host link,
and the figures are pages found, pages/s, CPU ms per page (all processes) and peak RSS.

Each crawl runs as its own subprocess: wall time and page counts come from the child, CPU
seconds (user + system of the whole process tree) from ``os.wait4`` on it, and the peak RSS
summed over its process tree from ``/proc``, sampled every 50 ms. The site is served by nginx
when it is installed (``apt-get install -y nginx``), else by the Python server with a warning:
that server then competes with the crawlers for the two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crawler.bench.measure import TreeRSSSampler, tree_pids
from crawler.bench.run import verify_crawl
from crawler.bench.server import SiteServer, find_nginx
from crawler.bench.site import SiteInfo, generate_site, pick_origins, worker_split

HERE = Path(__file__).resolve().parent
SCRAPY_SCRIPT = HERE / "scrapy_bench_spider.py"


@dataclass
class Measurement:
    tool: str
    label: str
    pages: int
    items: int
    discovered: int
    crawl_s: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    ok: bool
    note: str = ""
    extra_fetches: int = 0  # responses beyond one per page (Scrapy: start pages again)
    rss_split: str = ""  # MB per process at the peak, the crawl's root process first
    cpu_split: str = ""  # ours: CPU s of start-up + engine + workers
    peak_pss_mb: float = 0.0  # the tree's peak proportional set size (shared pages once)
    crawl_cpu_s: float = 0.0  # ours: CPU of the engine and workers inside crawl(), no start-up

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.crawl_s if self.crawl_s else 0.0

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu_s / self.pages if self.pages else 0.0


@dataclass(frozen=True, slots=True)
class DocSite(SiteInfo):
    """Real HTML directories, one per host (``root/h<i>`` is a symlink to the i-th one).

    Start at each host's ``index.html``; every file under the directories is a servable URL,
    so "pages found" is the distinct fetched URLs that the server has (a 404 is not a page).
    """

    def url(self, page: int) -> str:  # only the start pages are numbered
        return f"{self.origins[page]}/index.html"

    @property
    def start_urls(self) -> tuple[str, ...]:
        return tuple(self.url(h) for h in range(self.hosts))

    def urls(self) -> Iterator[str]:
        for i, origin in enumerate(self.origins):
            top = self.host_dir(i).resolve()
            for path in top.rglob("*"):
                if path.is_file():
                    yield f"{origin}/{path.relative_to(top).as_posix()}"


def doc_site(dirs: list[Path], tmp: Path, workers: int) -> DocSite:
    """Serve ``dirs`` as they are: symlinks under a temporary root, one host each."""
    root = tmp / "docsite"
    root.mkdir()
    html = []
    for i, d in enumerate(dirs):
        if not (d / "index.html").is_file():
            raise SystemExit(f"--site {d}: no index.html there")
        (root / f"h{i}").symlink_to(d.resolve(), target_is_directory=True)
        html += list(d.resolve().rglob("*.html"))
    origins = pick_origins(len(dirs), balance_over=workers)
    size = sum(p.stat().st_size for p in html)
    return DocSite(root, origins, max(len(html), len(dirs)), 0, size, 0)


class TreePSSSampler(threading.Thread):
    """The peak summed ``Pss`` of a process tree, sampled from ``smaps_rollup``.

    RSS summed over processes counts a page shared by the engine and its forked workers once
    per process (each worker starts with the engine's ~38 MB of imported modules resident and
    shared); PSS splits a shared page among the processes mapping it, so the sum counts the
    machine's memory once. Reported beside RSS, which stays the issue's yardstick.
    """

    def __init__(self, root: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.peak = root, interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            total = 0
            for pid in tree_pids(self.root):
                with (
                    contextlib.suppress(OSError, ValueError, IndexError),
                    open(f"/proc/{pid}/smaps_rollup", "rb") as f,
                ):
                    for line in f:
                        if line.startswith(b"Pss:"):
                            total += int(line.split()[1]) << 10
                            break
            self.peak = max(self.peak, total)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _measure(cmd: list[str], timeout: float) -> tuple[float, float, float, str, int, str, float]:
    """Run ``cmd``: wall s, CPU s of its tree, peak tree RSS in MB, stdout, status, RSS split."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out)
        sampler = TreeRSSSampler(proc.pid, interval=0.05)
        sampler.start()
        pss = TreePSSSampler(proc.pid, interval=0.2)
        pss.start()
        deadline = t0 + timeout
        status, usage = 0, None
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    os.kill(proc.pid, 9)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.01)
        finally:
            sampler.stop()
            pss.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    assert usage is not None
    cpu = usage.ru_utime + usage.ru_stime
    # The root comes first in the split: for ours, the engine, then the workers.
    split = "+".join(f"{rss >> 20}" for rss in sampler.peak_by_pid.values())
    return wall, cpu, sampler.peak / 1048576, text, proc.returncode, split, pss.peak / 1048576


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {}


def _enough(pages: int, site: SiteInfo, discovery: int) -> bool:
    if isinstance(site, DocSite):  # what a real site holds is found by crawling it
        return pages > 0
    # In discovery mode a few unserved URLs are fetched before the real pages fill the queue,
    # and they count toward the page limit (Scrapy fetches more of them early on), so most of
    # the real pages is enough there.
    return pages >= 0.8 * discovery if discovery else pages == site.pages


def run_ours(
    site: SiteInfo, tmp: Path, args: argparse.Namespace, label: str, discovery: int = 0
) -> Measurement:
    db = tmp / f"ours-{label}.db"
    spec = {
        "start_urls": list(site.start_urls),
        "db": str(db),
        "workers": args.workers,
        "per_host": args.per_host,
        "discovery": discovery,
    }
    cmd = [sys.executable, "-m", "crawler.bench.child", json.dumps(spec)]
    wall, cpu, rss, text, code, split, pss = _measure(cmd, args.timeout)
    summary = _last_json(text)
    check = verify_crawl(db, site) if db.exists() else {"pages": 0, "items": 0, "duplicates": 0}
    discovered = 0
    if db.exists():
        con = sqlite3.connect(db)
        try:
            discovered = con.execute("SELECT COUNT(*) FROM frontier").fetchone()[0]
        finally:
            con.close()
        db.unlink()
    ok = code == 0 and _enough(check["pages"], site, discovery) and check["duplicates"] == 0
    return Measurement(
        tool="ours",
        label=label,
        pages=check["pages"],
        items=check["items"],
        discovered=discovered,
        crawl_s=summary.get("crawl_seconds", wall),
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=rss,
        peak_pss_mb=pss,
        rss_split=split,
        crawl_cpu_s=summary.get("cpu_engine_s", 0.0) + summary.get("cpu_workers_s", 0.0),
        cpu_split="+".join(
            f"{summary.get(k, 0.0):.2f}" for k in ("cpu_startup_s", "cpu_engine_s", "cpu_workers_s")
        ),
        ok=ok,
        note="" if ok else f"exit {code} {summary.get('finish_reason')} {check}",
    )


def run_scrapy(
    site: SiteInfo, tmp: Path, args: argparse.Namespace, label: str, discovery: int = 0
) -> Measurement:
    feed = tmp / f"scrapy-{label}.jsonl"
    cmd = [sys.executable, str(SCRAPY_SCRIPT), "--per-host", str(args.per_host)]
    cmd += ["--feed", str(feed), "--discovery", str(discovery), *site.start_urls]
    if isinstance(site, DocSite):
        cmd.insert(2, "--same-host")
    wall, cpu, rss, text, code, split, pss = _measure(cmd, args.timeout)
    summary = _last_json(text)
    urls: set[str] = set()
    items = 0
    if feed.exists():
        with feed.open() as f:
            for line in f:
                items += 1
                urls.add(json.loads(line)["url"])
        feed.unlink()
    pages = len(urls & set(site.urls()))
    expected = discovery or site.pages
    # Scrapy requests its start URLs with dont_filter, so they are not in its duplicate filter
    # and pages linking back to them fetch them again: a few items more than pages is normal.
    ok = code == 0 and (pages > 0 if isinstance(site, DocSite) else pages == expected)
    return Measurement(
        tool="scrapy",
        label=label,
        pages=pages,
        items=items,
        discovered=int(summary.get("discovered", 0)),
        crawl_s=summary.get("crawl_seconds", wall),
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=rss,
        peak_pss_mb=pss,
        rss_split=split,
        ok=ok,
        note="" if ok else f"exit {code} {summary}",
        extra_fetches=int(summary.get("responses", 0)) - pages,
    )


def _row(m: Measurement) -> str:
    flag = "" if m.ok else f"  !! {m.note}"
    cores = m.cpu_s / m.wall_s if m.wall_s else 0.0
    # The bar's "cores over the crawl": inside crawl() only, without interpreter start-up.
    crawl_cores = f"{m.crawl_cpu_s / m.crawl_s:.2f}" if m.crawl_cpu_s and m.crawl_s else "-"
    return (
        f"{m.tool:7} {m.label:>9} {m.pages:>7} {m.items:>7} {m.discovered:>9} {m.crawl_s:>8.2f} "
        f"{m.pages_per_s:>8.0f} {m.cpu_s:>7.2f} {m.cpu_ms_per_page:>7.2f} {cores:>5.2f} "
        f"{crawl_cores:>5} {m.peak_rss_mb:>8.0f} {m.peak_pss_mb:>6.0f}  {m.rss_split:14} "
        f"{m.cpu_split}{flag}"
    )


HEADER = (
    f"{'tool':7} {'run':>9} {'pages':>7} {'items':>7} {'discovered':>9} {'crawl s':>8} "
    f"{'pages/s':>8} {'CPU s':>7} {'ms/page':>7} {'cores':>5} {'crawl':>5} {'RSS MB':>8} "
    f"{'PSS MB':>6}  {'RSS split':14} "
    "CPU start+engine+workers"
)


def _median(ms: list[Measurement], attr: str) -> float:
    return statistics.median(getattr(m, attr) for m in ms)


def _server(site: SiteInfo, backend: str) -> SiteServer:
    if backend == "auto" and find_nginx() is None:
        warnings.warn(
            "nginx not found (apt-get install -y nginx): serving with the Python server, "
            "which takes CPU from the crawlers",
            stacklevel=2,
        )
    return SiteServer(site, backend)


def _origins(args: argparse.Namespace) -> tuple[str, ...]:
    workers = args.workers or os.cpu_count() or 1
    return pick_origins(args.hosts, balance_over=0 if args.random_split else workers)


def throughput(args: argparse.Namespace, tmp: Path) -> list[Measurement]:
    workers = args.workers or os.cpu_count() or 1
    site: SiteInfo
    if args.site:
        site = doc_site(args.site, tmp, workers)
        site_backend = "nginx" if args.server == "auto" else args.server
        return _compare(args, tmp, site, site_backend, f"site: {', '.join(map(str, args.site))}")
    site = generate_site(tmp / "site", args.pages, args.hosts, args.seed, origins=_origins(args))
    return _compare(
        args,
        tmp,
        site,
        args.server,
        f"site: {site.pages} pages, {site.total_bytes / site.pages / 1024:.0f} KB and "
        f"{site.total_links / site.pages:.0f} links a page on {site.hosts} hosts",
    )


def _compare(
    args: argparse.Namespace, tmp: Path, site: SiteInfo, backend: str, what: str
) -> list[Measurement]:
    workers = args.workers or os.cpu_count() or 1
    print(
        f"{what}; per_host {args.per_host}, our workers {workers} "
        f"(hosts per worker: {worker_split(site.origins, workers)})"
    )
    results: list[Measurement] = []
    with _server(site, backend) as server:
        print(f"server: {server.backend}\n\n{HEADER}")
        for r in range(args.rounds):
            order = ("ours", "scrapy") if r % 2 == 0 else ("scrapy", "ours")
            for tool in order:
                if tool not in args.tools:
                    continue
                run = run_ours if tool == "ours" else run_scrapy
                m = run(site, tmp, args, f"round {r + 1}")
                results.append(m)
                print(_row(m), flush=True)
    ours = [m for m in results if m.tool == "ours"]
    scrapy = [m for m in results if m.tool == "scrapy"]
    if ours and scrapy:
        print("\nmedians          ours     scrapy   ours/scrapy")
        for attr, name in (
            ("pages", "pages found"),
            ("pages_per_s", "pages/s"),
            ("cpu_s", "CPU s"),
            ("cpu_ms_per_page", "CPU ms/page"),
            ("peak_rss_mb", "RSS MB"),
            ("peak_pss_mb", "PSS MB"),
        ):
            a, b = _median(ours, attr), _median(scrapy, attr)
            print(f"{name:12} {a:>9.1f} {b:>10.1f} {a / b if b else 0:>12.2f}")
    return results


def memory_scale(args: argparse.Namespace, tmp: Path) -> list[Measurement]:
    results: list[Measurement] = []
    print(f"{HEADER}")
    for target in args.discover:
        # Same page shape at every scale (same links per page), more pages for more URLs: what
        # grows between the runs is what the crawler keeps per discovered URL, not per page.
        pages = max(args.hosts, round(target / (1 + args.mem_links)))
        site = generate_site(
            tmp / f"site-{target}",
            pages,
            args.hosts,
            args.seed,
            min_kb=20,
            max_kb=60,
            min_links=20,
            max_links=60,
            origins=_origins(args),
            extra_links=args.mem_links,
        )
        label = f"{site.discoverable // 1000}k"
        with _server(site, args.server):
            for tool in args.tools:
                run = run_ours if tool == "ours" else run_scrapy
                m = run(site, tmp, args, label, discovery=site.pages)
                results.append(m)
                print(_row(m), flush=True)
        shutil.rmtree(site.root, ignore_errors=True)
    print()
    for tool in args.tools:
        ms = [m for m in results if m.tool == tool]
        if len(ms) >= 2 and ms[0].peak_rss_mb:
            growth = ms[-1].peak_rss_mb / ms[0].peak_rss_mb - 1
            print(
                f"{tool:7} peak RSS {ms[0].label} {ms[0].peak_rss_mb:.0f} MB -> {ms[-1].label} "
                f"{ms[-1].peak_rss_mb:.0f} MB: {growth:+.0%}"
            )
        if len(ms) >= 2 and all(m.discovered for m in ms):
            per_url = [1e6 * m.cpu_s / m.discovered for m in ms]
            print(
                f"{tool:7} CPU per discovered URL {ms[0].label} {per_url[0]:.1f} us -> "
                f"{ms[-1].label} {per_url[-1]:.1f} us: {per_url[-1] / per_url[0] - 1:+.0%}"
            )
    return results


def _compile_package() -> None:
    """Byte-compile the crawler package before measuring: with PYTHONDONTWRITEBYTECODE set (or
    a read-only tree) every crawl would compile each module whose .pyc is missing or stale at
    start-up, and count that as its CPU (0.08 s a crawl, measured)."""
    import compileall

    import crawler

    compileall.compile_dir(Path(crawler.__file__).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="our worker processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument("--tools", default="ours,scrapy", help="comma-separated: ours,scrapy")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per crawl")
    parser.add_argument("--memory-scale", action="store_true")
    parser.add_argument(
        "--mem-links", type=int, default=499, help="memory mode: unserved links per page"
    )
    parser.add_argument(
        "--discover",
        default="100000,1000000",
        help="memory mode: URLs each crawl discovers (comma-separated)",
    )
    parser.add_argument(
        "--random-split",
        action="store_true",
        help="random ports, however the hosts then fall on our workers (default: an even split)",
    )
    parser.add_argument(
        "--site",
        type=Path,
        action="append",
        help="crawl this directory of real HTML (one host each; repeat for more hosts)",
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    _compile_package()
    args.tools = [t for t in args.tools.split(",") if t]
    args.discover = [int(x) for x in args.discover.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="crawler-benchmark-"))
    try:
        results = memory_scale(args, tmp) if args.memory_scale else throughput(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        rows = [asdict(m) | {"pages_per_s": m.pages_per_s} for m in results]
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
