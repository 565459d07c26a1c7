"""``run_bench``: generate a site, serve it on loopback, crawl it with the real engine, check it.

Like ``scrapy bench``, but it also proves the crawl was right: every generated page must have
exactly one row in ``pages`` for this run, and one item each. It measures wall time, CPU
seconds (this process plus the worker processes, from ``getrusage``) and the peak RSS summed
over the crawl's process tree (the site server is a child too, and is left out).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crawler.bench.measure import TreeRSSSampler, cpu_now
from crawler.bench.server import SiteServer
from crawler.bench.site import SiteInfo, generate_site, pick_origins, worker_split
from crawler.bench.spider import bench_settings
from crawler.store.verify import stored_pages

__all__ = ["run_bench", "verify_crawl"]


def verify_crawl(db_path: Path | str, site: SiteInfo, run_id: Any = None) -> dict[str, Any]:
    """Compare the ``pages`` and ``items`` rows with the site: what is missing or extra."""
    stored = stored_pages(db_path, run_id)
    rows, items = stored.pages, stored.items
    expected = set(site.urls())
    fetched = [url for url, _status in rows]
    seen = set(fetched)
    return {
        "pages": len(seen & expected),
        "items": items,
        "missing": len(expected - seen),
        "extra": len(seen - expected),
        "duplicates": len(fetched) - len(seen),
        "not_ok": sum(1 for url, status in rows if url in expected and status != 200),
    }


def _mb(n: int) -> float:
    return round(n / 1048576, 1)


def run_bench(
    pages: int = 1000,
    hosts: int = 4,
    workers: int | None = None,
    per_host: int = 8,
    server: str = "auto",
    keep_db: bool = False,
    out: Callable[[str], object] = print,
    *,
    seed: int = 1,
    db_path: Path | str | None = None,  # a str: a postgresql:// URL
    max_runtime: float = 600.0,
) -> dict[str, Any]:
    """Crawl a generated site of ``pages`` pages over ``hosts`` loopback hosts; report.

    ``server`` is ``auto`` (nginx if installed, else Python), ``nginx`` or ``python``.
    ``keep_db`` keeps the crawl's database as ``data/bench.db`` (or ``db_path`` when given).
    Returns the numbers it printed; ``ok`` is False when a page was missing, fetched twice or
    had no item, or the crawl did not finish cleanly.
    """
    from crawler.bench.spider import BenchSpider
    from crawler.engine import crawl

    tmp = Path(tempfile.mkdtemp(prefix="crawler-bench-"))
    try:
        settings = bench_settings(workers, per_host, max_runtime=max_runtime)
        n = settings.worker_count
        started = time.perf_counter()
        # Ports are chosen so the hosts spread evenly over the workers (see pick_origins).
        origins = pick_origins(hosts, balance_over=n)
        site = generate_site(tmp / "site", pages, hosts, seed, origins=origins)
        generated = time.perf_counter() - started
        if db_path is None:
            db_path = Path("data/bench.db") if keep_db else tmp / "bench.db"
        if isinstance(db_path, Path):
            db_path.parent.mkdir(parents=True, exist_ok=True)
        with SiteServer(site, server) as srv:
            assert srv.pid is not None
            out(
                f"crawler bench: {pages} pages ({site.total_bytes / pages / 1024:.0f} KB, "
                f"{site.total_links / pages:.0f} links each) on {hosts} hosts, "
                f"{srv.backend} server; {n} workers (hosts each: {worker_split(origins, n)}), "
                f"per_host {per_host}"
            )
            with TreeRSSSampler(exclude=frozenset({srv.pid})) as rss:
                cpu0 = cpu_now()
                t0 = time.perf_counter()
                result = crawl(
                    BenchSpider,
                    settings=settings,
                    db_path=db_path,
                    spider_kwargs={"start_urls": " ".join(site.start_urls)},
                    fresh=True,
                )
                seconds = time.perf_counter() - t0
                cpu = cpu_now() - cpu0
            backend = srv.backend
        check = verify_crawl(db_path, site, getattr(result, "run_id", None))
        ok = (
            check["pages"] == pages
            and check["missing"] == check["duplicates"] == check["not_ok"] == 0
            and check["items"] == pages
            and getattr(result, "exit_code", 1) == 0
        )
        report: dict[str, Any] = {
            "ok": ok,
            **check,
            "seconds": round(seconds, 3),
            "pages_per_s": round(check["pages"] / seconds, 1) if seconds else 0.0,
            "cpu_s": round(cpu.total, 2),
            "cpu_parent_s": round(cpu.parent, 2),
            "cpu_children_s": round(cpu.children, 2),
            "peak_rss_mb": _mb(rss.peak),
            "server": backend,
            "workers": settings.worker_count,
            "per_host": per_host,
            "hosts": hosts,
            "generate_s": round(generated, 2),
            "exit_code": getattr(result, "exit_code", None),
            "finish_reason": getattr(result, "finish_reason", None),
            "run_id": getattr(result, "run_id", None),
            "db": str(db_path)
            if keep_db or not isinstance(db_path, Path) or db_path.parent != tmp
            else None,
        }
        verdict = (
            "all fetched once"
            if ok
            else (
                f"NOT OK: {check['missing']} missing, {check['duplicates']} duplicates, "
                f"{check['not_ok']} not 200, {check['items']} items, "
                f"finish {report['finish_reason']} exit {report['exit_code']}"
            )
        )
        out(f"  pages      {check['pages']} ({verdict})")
        out(f"  items      {check['items']}")
        out(f"  time       {seconds:.2f} s, {report['pages_per_s']:.0f} pages/s")
        out(
            f"  CPU        {cpu.total:.2f} s (engine {cpu.parent:.2f} s, "
            f"workers {cpu.children:.2f} s)"
        )
        out(f"  peak RSS   {report['peak_rss_mb']:.0f} MB (summed over the crawl's processes)")
        if report["db"]:
            out(f"  database   {report['db']}")
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
