"""Helpers for tests that run a crawl and read its database.

``page(title, links)`` builds an HTML page; ``TitleSpider`` yields one item per page (its URL
and title) and follows every link; ``rows(db, sql, ...)`` reads the crawl's SQLite file (or
its ``postgresql://`` database), and ``rows_so_far`` does the same while a crawl in another
process may not have created it (or its schema) yet; ``tables(db)`` names its tables.
``assert_crawled_once(db, total)`` is the end state of a crawl that lost nothing: every page
stored once, one item each, nothing left in the frontier. ``spawn_crawl`` runs ``crawl()`` in
a ``python -c`` child in its own session, for the tests that kill or signal a whole crawl.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from crawler import Response, Spider

__all__ = [
    "TitleSpider",
    "assert_crawled_once",
    "page",
    "rows",
    "rows_so_far",
    "spawn_crawl",
    "tables",
]


def page(title: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>"


class TitleSpider(Spider):
    name = "titles"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()


def rows(db: Path | str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """SQL (``?`` placeholders) on a crawl's SQLite file or its ``postgresql://`` database."""
    if isinstance(db, str) and db.startswith("postgresql://"):
        import psycopg

        # A literal % (a LIKE pattern) is %% once the query has parameters.
        with psycopg.connect(db) as pg:
            return pg.execute(sql.replace("%", "%%").replace("?", "%s"), params).fetchall()
    # A crawl may still be writing (or another writer holding the lock): wait up to 10 s.
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def rows_so_far(db: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """``rows``, or ``[]`` while the database or its schema does not exist yet."""
    if isinstance(db, str) and db.startswith("postgresql://"):
        import psycopg

        try:
            return rows(db, sql)
        except psycopg.errors.UndefinedTable:
            return []  # the schema is not there yet
    db = Path(db)
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # the schema is not there yet


def tables(db: Path | str) -> list[str]:
    """The names of the crawl database's tables, on either backend."""
    if isinstance(db, str) and db.startswith("postgresql://"):
        sql = (
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"
    return [name for (name,) in rows(db, sql)]


def assert_crawled_once(db: Path | str, total: int) -> None:
    """``total`` pages stored exactly once, one item for each, every frontier row done."""
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(total, total)]
    assert rows(db, "SELECT count(*), count(DISTINCT page_url) FROM items") == [(total, total)]
    assert rows(db, "SELECT state, count(*) FROM frontier GROUP BY state") == [("done", total)]


_CRAWL = """
import sys
sys.path.insert(0, {folder!r})
from {module} import {cls}
from crawler.engine import crawl
from crawler.settings import Settings

result = crawl(
    {cls},
    settings=Settings(**{settings!r}),
    db_path={db!r},
    spider_kwargs={{"start_urls": {start!r}}},
)
sys.exit(result.exit_code)
"""


def spawn_crawl(
    folder: Path,
    spider: tuple[str, str],
    db: Path | str,
    start_urls: str,
    settings: dict[str, Any],
) -> subprocess.Popen[bytes]:
    """Crawl in a child process: ``spider`` is (class name, source), written to ``folder``.

    The child starts a new session, so it and its workers form one process group: signal it
    with ``os.killpg(proc.pid, ...)`` as a terminal or systemd would. Its stderr is piped.
    """
    cls, source = spider
    module = cls.lower()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    code = _CRAWL.format(
        folder=str(folder), module=module, cls=cls, settings=settings, db=str(db), start=start_urls
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
