"""Requests with callbacks, priorities and meta: listing pages lead to product pages.

    crawler run catalog -a start_url=http://127.0.0.1:8000/catalog/

The site is expected to look like this (any HTML with these classes works):

- a listing page has ``<a class="product" href=...>`` links, an ``<h1>`` with the category
  name and an optional ``<a rel="next" href=...>`` to the following listing page;
- a product page has ``<h1>`` (the product name) and ``<span class="price">``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crawler import Request, Response, Spider


class CatalogSpider(Spider):
    name = "catalog"
    start_url = "http://127.0.0.1:8000/catalog/"
    custom_settings = {"per_host": 2, "max_depth": 20}

    def start_requests(self) -> Iterator[Request]:
        # A Request rather than a plain URL, to name the callback and mark the first page.
        yield Request(self.start_url, callback=self.parse_listing, meta={"listing_page": 1})

    def parse(self, response: Response) -> Iterator[Request]:
        # Plain URLs (from elsewhere) default to parse: treat them as listings.
        return self.parse_listing(response)

    def parse_listing(self, response: Response) -> Iterator[Request]:
        category = (response.css("h1::text").get() or "").strip()
        page = response.meta.get("listing_page", 1)
        for href in response.css("a.product::attr(href)").getall():
            yield response.follow(
                href,
                callback=self.parse_product,
                meta={"category": category, "listing_page": page},
                priority=10,  # products before further listing pages
            )
        next_page = response.css("a[rel=next]::attr(href)").get()
        if next_page:
            yield response.follow(
                next_page, callback=self.parse_listing, meta={"listing_page": page + 1}
            )

    def parse_product(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {
            "url": response.url,
            "name": (response.css("h1::text").get() or "").strip(),
            "price": response.css(".price::text").get(),
            "category": response.meta.get("category"),
            "listing_page": response.meta.get("listing_page"),
        }
