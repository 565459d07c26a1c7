"""``python -m crawler``: the same as the ``crawler`` command."""

from __future__ import annotations

from crawler.cli import main

if __name__ == "__main__":
    main()
