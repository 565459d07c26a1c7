"""Small helpers the end-to-end crawl tests share: a page builder, a spider, a SQL reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from crawler import Response, Spider

__all__ = ["TitleSpider", "page", "rows"]


def page(title: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>"


class TitleSpider(Spider):
    name = "titles"

    def parse(self, response: Response) -> Any:
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.links()


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()
