"""PostgreSQL against SQLite, and N nodes against one, on the ``crawler bench`` site (issue 10).

A benchmark, not a test (CI does not run it). Two parts:

**One node** (``--part one``): each round crawls the same generated site
(``crawler.bench.run_bench``, nginx when installed) into a fresh SQLite file and into a fresh
PostgreSQL database, alternating, and prints pages/s for each and the ratio of the medians.

**Nodes** (``--part nodes``): each round crawls the site into a fresh PostgreSQL database with
each configuration of ``--configs`` (``NODESxWORKERS``, default ``1x2,2x1,2x2``): that many
separate ``crawl()`` processes started together, which join one run and share the hosts
through leases. The time is from the first start to the last exit; the check is the same as
``crawler bench``'s (every page once, one item each, exit 0 from every node)::

    python benchmarks/postgres.py                       # both parts, a throwaway cluster
    python benchmarks/postgres.py --part nodes --rounds 3 --pages 2000
    python benchmarks/postgres.py --db postgresql://crawler@dbhost/bench   # an existing one

The throwaway cluster is the one the tests use (``tests/kit/postgres.py``): Debian's
``initdb`` + ``pg_ctl`` into a temp dir, ``fsync=off``; on a real server expect the commit
cost of the disk on top (see docs/distributed.md).

On a shared machine pages/s moves with whatever else runs; CPU time per page moves much
less, so each line also gives the crawler's CPU (every node and its workers) and, with the
throwaway cluster, the server's (the postmaster and every backend), in ms per page.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.bench.run import run_bench, verify_crawl  # noqa: E402
from crawler.bench.server import SiteServer  # noqa: E402
from crawler.bench.site import generate_site, pick_origins  # noqa: E402
from crawler.bench.spider import bench_settings  # noqa: E402
from tests.kit.postgres import PostgresServer  # noqa: E402

_NODE = """
import sys
sys.path.insert(0, {root!r})
from crawler.bench.spider import bench_settings
from crawler.bench.spider import BenchSpider
from crawler.engine import crawl

result = crawl(
    BenchSpider,
    settings=bench_settings({workers}, {per_host}),
    db_path={url!r},
    spider_kwargs={{"start_urls": {start!r}}},
)
sys.exit(result.exit_code)
"""


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (a node's workers count once the
    node has waited for them, and the node once we have)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int, reaped: bool) -> float:
    """CPU seconds of ``pid`` (with ``reaped``: and of the children it has waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(server: PostgresServer | None) -> float:
    """CPU seconds the throwaway cluster used so far: the postmaster, the backends it reaped
    and the live ones (0 for a server given with --db: not ours to look at)."""
    if server is None:
        return 0.0
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = _proc_cpu(postmaster, reaped=True)
    for task in Path(f"/proc/{postmaster}/task").iterdir():
        for child in (task / "children").read_text().split():
            # A backend that just ended is counted in the postmaster's cutime instead.
            with contextlib.suppress(OSError):
                total += _proc_cpu(int(child), reaped=False)
    return total


def _fresh(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def part_one(url: str, args: argparse.Namespace, server: PostgresServer | None) -> None:
    figures: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    for n in range(args.rounds):
        for backend in ("sqlite", "postgres"):
            if backend == "postgres":
                _fresh(url)
            db_cpu = server_cpu(server)
            report = run_bench(
                args.pages, args.hosts, args.workers or None,
                db_path=url if backend == "postgres" else None,
                out=lambda line: None, seed=1,
            )  # fmt: skip
            if not report["ok"]:
                raise SystemExit(f"round {n + 1} {backend}: NOT OK {report}")
            db_cpu = server_cpu(server) - db_cpu if backend == "postgres" else 0.0
            figures[backend].append(report["pages_per_s"])
            print(
                f"round {n + 1} {backend:8s} {report['pages_per_s']:7.0f} pages/s"
                f"  CPU {report['cpu_s']:.1f} s (engine {report['cpu_parent_s']:.1f} s)"
                f"  ms/page: crawler {1000 * report['cpu_s'] / args.pages:.2f}"
                f" server {1000 * db_cpu / args.pages:.2f}"
            )
    lite, pg = (statistics.median(figures[b]) for b in ("sqlite", "postgres"))
    print(f"median: sqlite {lite:.0f} pages/s, postgres {pg:.0f} pages/s: {pg / lite:.0%}")


def crawl_with_nodes(url: str, start: str, nodes: int, workers: int, per_host: int) -> float:
    """Start ``nodes`` crawl processes on one database together; seconds until the last ends."""
    code = _NODE.format(root=str(ROOT), workers=workers, per_host=per_host, url=url, start=start)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(nodes)
    ]
    errors = []
    for proc in procs:
        _out, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            errors.append(f"exit {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    seconds = time.perf_counter() - t0
    if errors:
        raise SystemExit("a node failed: " + "; ".join(errors))
    return seconds


def part_nodes(url: str, args: argparse.Namespace, server: PostgresServer | None) -> None:
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    figures: dict[str, list[float]] = {c: [] for c in args.configs.split(",")}
    tmp = Path(tempfile.mkdtemp(prefix="crawler-bench-nodes-"))
    try:
        per_host = bench_settings(None, 8).per_host
        site = generate_site(
            tmp / "site", args.pages, args.hosts, 1, origins=pick_origins(args.hosts)
        )
        with SiteServer(site, "auto") as srv:
            print(
                f"{args.pages} pages on {args.hosts} hosts ({srv.backend} server), per_host"
                f" {per_host}; NODESxWORKERS, every node its own process tree"
            )
            for n in range(args.rounds):
                for nodes, workers in configs:
                    _fresh(url)
                    start = " ".join(site.start_urls)
                    cpu, db_cpu = _children_cpu(), server_cpu(server)
                    seconds = crawl_with_nodes(url, start, nodes, workers, per_host)
                    time.sleep(0.5)  # the nodes' backends end after their connections close
                    cpu, db_cpu = _children_cpu() - cpu, server_cpu(server) - db_cpu
                    with psycopg.connect(url) as conn:
                        row = conn.execute("SELECT max(id), count(*) FROM runs").fetchone()
                        assert row is not None
                        split = conn.execute(
                            "SELECT string_agg(pages::text, '+' ORDER BY id) FROM nodes"
                        ).fetchone()
                    run_id, runs = row
                    check = verify_crawl(url, site, run_id)
                    ok = (
                        runs == 1 and check["pages"] == args.pages and check["items"] == args.pages
                        and check["missing"] == check["duplicates"] == check["not_ok"] == 0
                    )  # fmt: skip
                    if not ok:
                        raise SystemExit(f"round {n + 1} {nodes}x{workers}: NOT OK {check}")
                    rate = args.pages / seconds
                    figures[f"{nodes}x{workers}"].append(rate)
                    print(
                        f"round {n + 1} {nodes}x{workers} nodes: {rate:6.0f} pages/s"
                        f" ({seconds:.1f} s; pages per node {split[0] if split else '?'})"
                        f"  ms/page: crawler {1000 * cpu / args.pages:.2f}"
                        f" server {1000 * db_cpu / args.pages:.2f}"
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    medians = ", ".join(f"{c} {statistics.median(v):.0f}" for c, v in figures.items())
    print(f"median pages/s: {medians}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("one", "nodes", "both"), default="both")
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0, help="workers for --part one")
    ap.add_argument("--configs", default="1x2,2x1,2x2", help="NODESxWORKERS, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", help="postgresql:// URL (default: a throwaway local cluster)")
    args = ap.parse_args()
    server = None if args.db else PostgresServer().start()
    url = args.db or (server.database() if server else "")
    try:
        if args.part in ("one", "both"):
            part_one(url, args, server)
        if args.part in ("nodes", "both"):
            part_nodes(url, args, server)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
