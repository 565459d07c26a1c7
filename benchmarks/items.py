"""Micro-benchmark of recording items: Store.record with and without the item history.

    python benchmarks/items.py [--pages 2000] [--items 20] [--batch 50]

Records the same shop three times (run 1: every item new; run 2: a tenth of the prices
changed and a tenth of the items gone; run 3: nothing changed) into a fresh SQLite file, once
as a spider without ``item_key`` (items replaced with their page, as before issue 12) and
once with it (tracked_items, item_versions, item_changes), and prints items/s per run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from crawler.messages import NewRequest, Outcome, Page
from crawler.store import Store
from crawler.urls import fingerprint, url_host


def shop(pages: int, items: int, run: int) -> list[tuple[str, list[dict[str, object]]]]:
    out = []
    for p in range(pages):
        rows = []
        for i in range(items):
            n = p * items + i
            if run == 1 and n % 10 == 3:
                continue  # gone in run 2 (and 3)
            price = 10.0 + n % 7 + (0.5 if run >= 1 and n % 10 == 5 else 0.0)
            rows.append({"sku": f"s{n}", "name": f"Product {n}", "price": price, "stock": n % 3})
        out.append((f"http://shop.test/c{p}", rows))
    return out


def record(store: Store, run: int, data: list, batch: int, track: bool) -> float:
    run_id = store.begin_run("bench")
    store.add(NewRequest(fingerprint(url), url, url_host(url)) for url, _ in data)
    outcomes = []
    for url, rows in data:
        body = repr(rows).encode()
        page = Page(url, 200, "{}", "text/html", len(body), None, str(hash(body)), None, None,
                    None, 0, time.time(), 1.0)  # fmt: skip
        keys = tuple(str(r["sku"]) for r in rows) if track else ()
        outcomes.append(Outcome(fingerprint(url), url, url_host(url), "done", page=page,
                                items=tuple(rows), item_keys=keys, callback="parse"))  # fmt: skip
    t = time.perf_counter()
    for i in range(0, len(outcomes), batch):
        store.record(outcomes[i : i + batch], run_id=run_id, store_body=False, track_items=track)
    dt = time.perf_counter() - t
    store.end_run(run_id, exit_code=0, finish_reason="finished", stats={})
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for track in (False, True):
            store = Store(Path(tmp) / f"items-{track}.db")
            for run in range(3):
                data = shop(args.pages, args.items, min(run, 1))
                n = sum(len(rows) for _, rows in data)
                dt = record(store, run, data, args.batch, track)
                label = "item_key" if track else "no key  "
                print(f"{label} run {run + 1}: {n} items in {dt:.2f}s, {n / dt:,.0f} items/s")
            store.close()


if __name__ == "__main__":
    main()
