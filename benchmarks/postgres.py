"""One node on PostgreSQL against SQLite on the ``crawler bench`` site (issue 10's bar).

A benchmark, not a test (CI does not run it). Each round crawls the same generated site
(``crawler.bench.run_bench``, nginx when installed) into a fresh SQLite file and into a fresh
PostgreSQL database, alternating, and prints pages/s for each and the ratio of the medians::

    python benchmarks/postgres.py                       # a throwaway local cluster (initdb)
    python benchmarks/postgres.py --db postgresql://crawler@dbhost/bench   # an existing one

The throwaway cluster is the one the tests use (``tests/kit/postgres.py``): Debian's
``initdb`` + ``pg_ctl`` into a temp dir, ``fsync=off``; on a real server expect the commit
cost of the disk on top (see docs/distributed.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.bench.run import run_bench  # noqa: E402
from tests.kit.postgres import PostgresServer  # noqa: E402


def _fresh(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS frontier, pages, items, links, errors, runs, robots")
        conn.execute("DROP SEQUENCE IF EXISTS frontier_seq")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", help="postgresql:// URL (default: a throwaway local cluster)")
    args = ap.parse_args()
    server = None if args.db else PostgresServer().start()
    url = args.db or (server.database() if server else "")
    figures: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    try:
        for n in range(args.rounds):
            for backend in ("sqlite", "postgres"):
                if backend == "postgres":
                    _fresh(url)
                report = run_bench(
                    args.pages, args.hosts, args.workers or None,
                    db_path=url if backend == "postgres" else None,
                    out=lambda line: None, seed=1,
                )  # fmt: skip
                if not report["ok"]:
                    print(f"round {n + 1} {backend}: NOT OK {report}")
                    return 1
                figures[backend].append(report["pages_per_s"])
                print(
                    f"round {n + 1} {backend:8s} {report['pages_per_s']:7.0f} pages/s"
                    f"  CPU {report['cpu_s']:.1f} s (engine {report['cpu_parent_s']:.1f} s)"
                )
    finally:
        if server is not None:
            server.stop()
    lite, pg = (statistics.median(figures[b]) for b in ("sqlite", "postgres"))
    print(f"median: sqlite {lite:.0f} pages/s, postgres {pg:.0f} pages/s: {pg / lite:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
