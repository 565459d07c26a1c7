"""A broad crawl: thousands of hosts with a few small pages each, the web rather than a site.

    python benchmarks/broad.py [--hosts 20000] [--pages-per-host 3] [--rounds 3]

``crawler bench`` and ``benchmarks/crawl.py`` crawl a few hosts with thousands of pages each;
there, whatever the engine does per host is paid a few times. Here every host has a few pages,
so a cost that follows the number of hosts the run knows (the queue's hosts with work, per-host
clocks, connection pools, open sockets) shows in CPU per page and in the process tree's open
files and peak RSS.

Hosts are names, ``h<i>.wide.test``, all served by one nginx on one loopback port (by name,
``crawler.bench.server``) and dialled through the crawler's ``resolve`` setting. Pages link
to pages of other hosts (the site generator's random links), so the queue holds most hosts
at once. Each crawl runs as its own process (``crawler.bench.child``); the figures: pages/s,
CPU ms per page (engine, workers), peak RSS and peak open files of the crawl's process tree,
and whether every page was stored exactly once. nginx is required.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.kit.postgres: the tests' throwaway cluster

from crawler.bench.measure import TreeRSSSampler  # noqa: E402
from crawler.bench.run import verify_crawl  # noqa: E402
from crawler.bench.server import SiteServer  # noqa: E402
from crawler.bench.site import SiteInfo, generate_site, named_origins  # noqa: E402
from tests.kit.postgres import PostgresServer  # noqa: E402

DOMAIN = "wide.test"


def one_crawl(
    site: SiteInfo, tmp: Path, args: argparse.Namespace, label: str, pg_url: str | None = None
) -> dict[str, Any]:
    """One crawl of ``site``: into a fresh SQLite file, or with ``args.nodes`` nodes into the
    fresh database at ``pg_url``, every node its own process tree, started together."""
    db = tmp / f"broad-{label}.db" if pg_url is None else pg_url
    if pg_url is not None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    spec = {
        "start_urls": list(site.start_urls),
        "db": str(db),
        "workers": args.workers,
        "per_host": args.per_host,
        "discovery": 0,
        "settings": {
            "resolve": {f"*.{DOMAIN}": "127.0.0.1"},
            "max_runtime": args.timeout,
            "robots": args.robots,  # nginx answers 404: every host's rules are "allow all"
        },
    }
    spec_file = tmp / "spec.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "crawler.bench.child", f"@{spec_file}"]
    nodes = 1 if pg_url is None else args.nodes
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(nodes)]
    with contextlib.ExitStack() as stack:
        samplers = [
            stack.enter_context(TreeRSSSampler(proc.pid, interval=0.1, count_files=True))
            for proc in procs
        ]
        outs = [proc.communicate(timeout=args.timeout + 60)[0] for proc in procs]
        seconds = time.perf_counter() - t0
    summaries = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    check = verify_crawl(db, site)
    if isinstance(db, Path):
        db.unlink()
    pages = check["pages"] or 1
    codes = [proc.returncode for proc in procs]
    ok = codes == [0] * nodes and check["pages"] == site.pages and check["duplicates"] == 0
    return {
        "ok": ok,
        "pages": check["pages"],
        "pages_per_s": check["pages"] / (seconds if nodes > 1 else summaries[0]["crawl_seconds"]),
        "engine_ms": 1000 * sum(s["cpu_engine_s"] for s in summaries) / pages,
        "workers_ms": 1000 * sum(s["cpu_workers_s"] for s in summaries) / pages,
        "peak_rss_mb": sum(s.peak for s in samplers) / 1048576,
        "peak_fds": sum(s.peak_files for s in samplers),
        "note": "" if ok else f"exits {codes} {[s['finish_reason'] for s in summaries]} {check}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument("--pages-per-host", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="0: the number of CPUs")
    parser.add_argument("--per-host", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per crawl")
    parser.add_argument(
        "--postgres", action="store_true", help="into a throwaway PostgreSQL cluster"
    )
    parser.add_argument("--nodes", type=int, default=1, help="with --postgres: nodes of the run")
    parser.add_argument(
        "--robots", action="store_true", help="ask every host for its robots.txt first"
    )
    args = parser.parse_args()
    pages = args.hosts * args.pages_per_host
    with tempfile.TemporaryDirectory(prefix="crawler-broad-") as name:
        tmp = Path(name)
        t = time.perf_counter()
        site = generate_site(
            tmp / "site", pages, args.hosts, seed=1, min_kb=2, max_kb=6, min_links=10,
            max_links=30, origins=named_origins(args.hosts, DOMAIN),
        )  # fmt: skip
        print(
            f"{pages} pages on {args.hosts} hosts ({site.total_bytes / pages / 1024:.1f} KB,"
            f" {site.total_links / pages:.0f} links each; written in"
            f" {time.perf_counter() - t:.0f} s), per_host {args.per_host}",
            flush=True,
        )
        results = []
        server = PostgresServer().start() if args.postgres else None
        try:
            pg_url = None if server is None else server.database()
            with SiteServer(site, "nginx"):
                for r in range(args.rounds):
                    res = one_crawl(site, tmp, args, str(r), pg_url)
                    results.append(res)
                    print(
                        f"round {r + 1}: {res['pages_per_s']:6.0f} pages/s  ms/page: engine"
                        f" {res['engine_ms']:.2f} workers {res['workers_ms']:.2f}  peak RSS"
                        f" {res['peak_rss_mb']:.0f} MB, open files {res['peak_fds']}"
                        f"  {'all stored once' if res['ok'] else 'NOT OK: ' + res['note']}",
                        flush=True,
                    )
        finally:
            if server is not None:
                server.stop()
    if len(results) > 1:
        med = {k: statistics.median(r[k] for r in results) for k in results[0] if k[0] != "n"}
        print(
            f"median: {med['pages_per_s']:.0f} pages/s, engine {med['engine_ms']:.2f} ms/page,"
            f" workers {med['workers_ms']:.2f} ms/page, peak RSS {med['peak_rss_mb']:.0f} MB,"
            f" open files {med['peak_fds']:.0f}"
        )


if __name__ == "__main__":
    main()
