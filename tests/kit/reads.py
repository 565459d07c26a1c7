"""A real Store, either backend, that notes how many hosts each read of its hosts with work
returned: the dispatch and node tests check the reads are windows, not the whole queue."""

from __future__ import annotations

from typing import Any


class HostReadsLogged:
    """Mixed in before a Store class: ``class Logged(HostReadsLogged, Store)``."""

    reads: list[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads = []

    def hosts_with_work(
        self, now: float, *, after: str = "", limit: int | None = None
    ) -> list[str]:
        hosts: list[str] = super().hosts_with_work(  # type: ignore[misc]
            now, after=after, limit=limit
        )
        self.reads.append(len(hosts))
        return hosts
