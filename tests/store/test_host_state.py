"""host_state: what autothrottle learned per host survives the run, and --fresh, on both
backends (``crawl_db``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crawler.store import open_store


def test_host_state_round_trips_and_outlives_fresh(crawl_db: Callable[[str], Path | str]) -> None:
    db = crawl_db("h")
    store = open_store(db)
    assert store.host_states() == {}
    store.put_host_states(
        {"a.test": {"concurrency": 3, "baseline": 0.02, "gap": 0.0, "updated_at": 1.0}}
    )
    store.put_host_states(
        {"a.test": {"concurrency": 4, "baseline": 0.03, "gap": 0.5, "updated_at": 2.0}}
    )
    store.close()
    again = open_store(db, fresh=True)
    try:
        assert again.host_states() == {
            "a.test": {"concurrency": 4, "baseline": 0.03, "gap": 0.5, "updated_at": 2.0}
        }
    finally:
        again.close()
