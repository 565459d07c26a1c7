"""The parent process: the loop, dispatch, politeness clocks, seeding, shutdown, the run lock.

Nothing here runs in a worker. ``crawl()`` is the entry point; ``crawler.engine.loop`` has it.
"""

from __future__ import annotations

from crawler.engine.loop import RunResult, crawl

__all__ = ["RunResult", "crawl"]
