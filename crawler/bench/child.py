"""One measured crawl of ``benchmarks/crawl.py``, in a process of its own.

``python -m crawler.bench.child SPEC`` (SPEC: JSON, or ``@FILE`` holding it, with
``start_urls``, ``db`` (a file or a ``postgresql://`` URL), ``workers``, ``per_host`` and
``discovery``, and optionally ``settings``, more settings by name) crawls with
:class:`~crawler.bench.spider.BenchSpider` (or ``DiscoverySpider`` when ``discovery`` is set)
and prints one line of JSON: the crawl's
seconds, exit code and finish reason, and its CPU seconds by kind of process.

A module of its own, not a flag of the benchmark script, so the measured process imports the
crawler and its spider and nothing of the harness (argparse, the servers, statistics,
subprocess handling): whatever this process has loaded when the engine forks is resident in
every worker too, and the benchmark sums resident memory over the process tree.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from crawler.bench.spider import BenchSpider, DiscoverySpider, bench_settings
from crawler.engine import crawl

__all__ = ["main"]


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main(spec_json: str) -> None:
    if spec_json.startswith("@"):  # a file: a broad crawl's start URLs outgrow a command line
        spec_json = Path(spec_json[1:]).read_text()
    spec = json.loads(spec_json)
    extra = {"max_pages": spec["discovery"]} if spec["discovery"] else {}
    extra.update(spec.get("settings", {}))  # e.g. resolve, for hosts served by name
    settings = bench_settings(spec["workers"], spec["per_host"], **extra)
    spider = DiscoverySpider if spec["discovery"] else BenchSpider
    startup = _cpu(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = crawl(
        spider,
        settings=settings,
        db_path=spec["db"] if spec["db"].startswith("postgresql://") else Path(spec["db"]),
        spider_kwargs={"start_urls": " ".join(spec["start_urls"])},
        fresh=True,
    )
    seconds = time.perf_counter() - t0
    summary = {
        "crawl_seconds": seconds,
        "exit_code": result.exit_code,
        "finish_reason": result.finish_reason,
        # CPU seconds by process kind: start-up (interpreter and imports, before crawl()),
        # the engine during the crawl, and the worker processes it reaped.
        "cpu_startup_s": startup,
        "cpu_engine_s": _cpu(resource.RUSAGE_SELF) - startup,
        "cpu_workers_s": _cpu(resource.RUSAGE_CHILDREN),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
