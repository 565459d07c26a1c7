"""What a finished crawl stored, read back for a check (``crawler bench`` verifies its crawl).

Read-only, like ``crawler runs``: the file is opened with ``mode=ro``, so checking a crawl
never creates or changes anything.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from crawler.store.api import is_database_url
from crawler.store.connection import connect_read_only

__all__ = ["StoredPages", "stored_pages"]


@dataclass(frozen=True, slots=True)
class StoredPages:
    """The ``pages`` rows of a run (or of every run) as ``(url, status)``, and its item count."""

    pages: tuple[tuple[str, int | None], ...]
    items: int


def stored_pages(db_path: str | os.PathLike[str], run_id: int | None = None) -> StoredPages:
    """The pages and items stored by run ``run_id`` (None: by every run) in ``db_path``."""
    if is_database_url(db_path):
        from crawler.store.postgres.read import stored_pages as postgres_pages

        pages, n = postgres_pages(os.fspath(db_path), run_id)
        return StoredPages(tuple(pages), n)
    conn = connect_read_only(Path(db_path))
    try:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        rows = conn.execute(f"SELECT url, status FROM pages {where}", args).fetchall()
        try:
            items = conn.execute(f"SELECT count(*) FROM items {where}", args).fetchone()[0]
        except sqlite3.OperationalError:  # no items at all: the table was never created
            items = 0
    finally:
        conn.close()
    return StoredPages(tuple((str(url), status) for url, status in rows), int(items))
