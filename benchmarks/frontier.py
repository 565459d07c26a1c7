"""Micro-benchmark of the per-link path: canonicalize + fingerprint, and frontier inserts.

    python benchmarks/frontier.py [--links 1000000] [--unique 0.1] [--db PATH]

Prints microseconds per link for canonicalize_url + fingerprint (absolute, root-relative and
document-relative links) and rows/s for Store.add_follows with mostly duplicate links, the
way a crawl of a densely linked site feeds the frontier.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from crawler.messages import Outcome, Page
from crawler.store import Store
from crawler.urls import canonicalize_url, fingerprint, url_host


def per_link(n: int = 200_000) -> None:
    base = "https://docs.example.org/3/library/os.html"
    cases = {
        "absolute canonical": [f"https://docs.example.org/3/library/m{i}.html" for i in range(n)],
        "root-relative": [f"/3/library/m{i}.html?x={i}" for i in range(n)],
        "document-relative": [f"m{i}.html#section" for i in range(n)],
        "needs fixing": [f"HTTPS://Docs.Example.org:443/a/./b/m {i}.html" for i in range(n)],
    }
    for name, links in cases.items():
        t = time.perf_counter()
        for link in links:
            url = canonicalize_url(link, base)
            fingerprint(url)
            url_host(url)
        dt = time.perf_counter() - t
        print(f"canonicalize+fingerprint+host, {name:20s} {dt / n * 1e6:6.2f} us/link")


def inserts(total: int, unique_share: float, path: Path) -> None:
    unique = max(1, int(total * unique_share))
    hosts = [f"host{h}.example" for h in range(8)]
    urls = [f"http://{hosts[i % 8]}/page/{i}" for i in range(unique)]
    follows = [(fingerprint(u), u, url_host(u)) for u in urls]
    rng = random.Random(1)
    pages = [[follows[rng.randrange(unique)] for _ in range(200)] for _ in range(total // 200)]
    with Store(path, fresh=True) as store:
        t = time.perf_counter()
        new = 0
        for batch in pages:
            new += store.add_follows(batch, depth=1)
        dt = time.perf_counter() - t
        print(
            f"add_follows: {len(pages) * 200:,} links ({new:,} new) in {dt:.2f}s"
            f" = {len(pages) * 200 / dt:,.0f} rows/s (200 links per call)"
        )
        t = time.perf_counter()
        taken = 0
        for host in store.hosts_with_work(time.time()):
            taken += len(store.take(host, 100, time.time()))
        print(f"hosts_with_work + take(100) per host: {time.perf_counter() - t:.4f}s")
        record_batches(store)


def record_batches(store: Store, batches: int = 20, per_batch: int = 50) -> None:
    """record() of pages with 30 KB bodies, one item and 100 links each (most seen before)."""
    run_id = store.begin_run("bench", {})
    body = b"x" * 30_000
    pages = 0
    spent = 0.0
    for b in range(batches):
        outcomes = []
        for i in range(per_batch):
            n = b * per_batch + i
            url = f"http://rec.example/p{n}"
            links = [f"http://rec.example/p{(n * 7 + k) % 5000}" for k in range(100)]
            page = Page(
                url, 200, "{}", "text/html", len(body), body, "h", None, None, None, 0, 0.0, 1.0
            )
            outcomes.append(
                Outcome(
                    fp=fingerprint(url),
                    url=url,
                    host="rec.example",
                    state="done",
                    page=page,
                    items=({"url": url, "title": f"t{n}"},),
                    follows=tuple((fingerprint(u), u, url_host(u)) for u in links),
                )
            )
        t = time.perf_counter()
        store.record(outcomes, run_id=run_id, store_body=True, store_links=False)
        spent += time.perf_counter() - t
        pages += len(outcomes)
    print(
        f"record: {pages} pages (30 KB body, 1 item, 100 links each) in {spent:.2f}s"
        f" = {pages / spent:,.0f} pages/s ({per_batch} per batch)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--unique", type=float, default=0.1)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    per_link()
    with tempfile.TemporaryDirectory() as tmp:
        inserts(args.links, args.unique, args.db or Path(tmp) / "bench.db")


if __name__ == "__main__":
    main()
