"""A user's project and the ``crawler`` command, as the CLI tests drive them.

``make_project(root, {"site.py": SOURCE})`` writes a project the way a user lays one out
(``root/spiders/<file>``); a test's ``project`` fixture then makes it the working directory.
``invoke(*args)`` runs the command in this process through click's CliRunner (stdout and stderr
apart, exceptions not swallowed). For a real ``python -m crawler`` child, pass
``env=subprocess_env()`` so that it imports this checkout.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

from click.testing import CliRunner, Result

from crawler.cli import cli

__all__ = ["REPO", "invoke", "make_project", "restore_logging", "subprocess_env"]

REPO = Path(__file__).resolve().parents[2]
"""The repository root: docs/, spiders/ and the crawler package live under it."""


def make_project(root: Path, spiders: Mapping[str, str]) -> Path:
    """Write ``root/spiders/<file>`` for each source (dedented); return ``root``."""
    folder = root / "spiders"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in spiders.items():
        (folder / name).write_text(textwrap.dedent(source))
    return root


def invoke(*args: str) -> Result:
    """``crawler ARGS...`` in this process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def subprocess_env() -> dict[str, str]:
    """The environment for a ``python -m crawler`` child: this checkout first on its path."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def restore_logging() -> Iterator[None]:
    """Save the "crawler" logger's handlers and level; restore them when resumed.

    ``crawler run`` configures that logger as a program would; a generator rather than a
    fixture so that a module-scoped fixture which runs the CLI can undo it too.
    """
    logger = logging.getLogger("crawler")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in logger.handlers[:]:
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
