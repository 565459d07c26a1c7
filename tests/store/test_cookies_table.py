"""The cookies table behind CrawlStore.cookies / put_cookies, on both backends (``crawl_db``:
a real SQLite file, a real PostgreSQL database)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from crawler.engine.cookiejars import CookieJars
from crawler.store import open_store


def test_jar_round_trips_through_the_store_and_fresh_empties_it(
    crawl_db: Callable[[str], Path | str],
) -> None:
    jars = CookieJars()
    jars.absorb(
        "https://www.example.com/",
        ["sid=abc; Domain=example.com; Path=/; Secure; HttpOnly; SameSite=Strict"],
    )
    jars.absorb("http://example.com/", ["who=b; Max-Age=3600"], session="buyer")
    db = crawl_db("c")
    store = open_store(db)
    store.put_cookies(jars.rows())
    store.put_cookies(jars.rows())  # replaces, never duplicates
    store.close()

    store = open_store(db)
    rows = store.cookies()
    assert sorted((r["session"], r["name"], r["value"]) for r in rows) == [
        ("", "sid", "abc"),
        ("buyer", "who", "b"),
    ]
    again = CookieJars()
    assert again.load(rows) == 2
    assert again.header("https://shop.example.com/a") == "sid=abc"
    assert again.header("http://shop.example.com/a") is None
    assert again.header("http://example.com/", "buyer") == "who=b"
    (sid,) = again.cookies()
    assert sid.get_nonstandard_attr("SameSite") == "Strict"
    assert again.load(rows, now=time.time() + 7200) == 1  # "who" expired by then
    store.put_cookies([])
    assert store.cookies() == []
    store.put_cookies(jars.rows())
    store.close()

    store = open_store(db, fresh=True)
    assert store.cookies() == []
    store.close()
