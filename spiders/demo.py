"""Crawl a site from one start URL: one item (url, title) per page, following every link.

    crawler run demo -a start_url=http://127.0.0.1:8000/ --max-pages 100

Links are followed within the start URL's host (and its subdomains) only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crawler import Response, Spider


class DemoSpider(Spider):
    name = "demo"
    start_url: str | None = None  # set with -a start_url=...

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.start_url:
            self.start_urls = [self.start_url]

    def start_requests(self) -> Iterator[str]:
        if not self.start_urls:
            raise ValueError("give a start URL: crawler run demo -a start_url=http://...")
        yield from self.start_urls

    def parse(self, response: Response) -> Iterator[dict[str, Any] | str]:
        title = response.css("title::text").get()
        yield {"url": response.url, "title": title.strip() if title else None}
        yield from response.links()
