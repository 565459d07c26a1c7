"""The import rules that keep ``ls crawler/`` the architecture (read from the source, by AST).

1. Only ``crawler/store/`` knows the database: no other module imports ``sqlite3`` or
   ``sqlite_utils``.
2. A worker never reaches the parent's code or the database: nothing in ``crawler/worker/``
   imports ``crawler.engine`` or ``crawler.store``, directly or through other crawler modules
   (a package's ``__init__`` counts, since importing a submodule runs it).
3. ``crawler/http/`` stands alone: it imports nothing from crawler outside ``crawler/http/``
   (the standard library and third-party packages are fine).

Every ``import`` statement counts, wherever it is: inside a function, under
``TYPE_CHECKING``. One exception: the root package's façade (``crawler/__init__.py``) names
``crawl`` and ``RunResult`` for type checkers and loads the engine on first attribute access,
so its lazy imports are not followed (importing any crawler module runs that file; a test
below checks in a real process that a worker's modules leave the engine and the store
unloaded). A failure names the module, the file and line, and the import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

import crawler

ROOT = Path(crawler.__file__).parent


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # a module it names (for crawler modules: resolved to a module that exists)
    line: int
    text: str  # the statement as written
    lazy: bool = False  # inside a function or under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        path = ROOT.parent / (self.module.replace(".", "/") + ".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        return f"{self.module} ({path.relative_to(ROOT.parent)}:{self.line}: {self.text})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve_from(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str, source: str | None = None) -> list[Import]:
    """Every import in ``module``; ``from pkg import name`` names ``pkg.name`` when that is
    one of our modules, else ``pkg``."""
    text = MODULES[module].read_text() if source is None else source
    lines = text.splitlines()
    tree = ast.parse(text)
    lazy_lines: set[int] = set()
    for node in ast.walk(tree):
        deferred = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (
            isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        )
        if deferred:
            lazy_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        statement = " ".join(" ".join(lines[node.lineno - 1 : node.end_lineno]).split())
        lazy = node.lineno in lazy_lines
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, node.lineno, statement, lazy))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in MODULES else base
                found.append(Import(module, target, node.lineno, statement, lazy))
    return found


def _under(target: str, *packages: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in packages)


def _crawler_edges(imp: Import) -> list[str]:
    """The crawler modules running ``imp`` executes: the target and its parent packages."""
    if not _under(imp.target, "crawler"):
        return []
    parts = imp.target.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in MODULES]


def database_imports(sources: dict[str, str] | None = None) -> list[str]:
    bad = []
    for module in MODULES:
        if _under(module, "crawler.store"):
            continue
        for imp in imports_of(module, (sources or {}).get(module)):
            if _under(imp.target, "sqlite3", "sqlite_utils"):
                bad.append(f"{imp} imports {imp.target}: only crawler/store/ may")
    return bad


def _chain_to(start: str, graph: dict[str, list[Import]], *forbidden: str) -> list[Import]:
    """The imports leading from ``start`` to a module under ``forbidden`` (empty: none)."""
    via: dict[str, Import] = {}  # module -> the import that first reached it
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for imp in graph[current]:
            if imp.module == "crawler" and imp.lazy:
                continue  # the root façade's lazy names (see the module docstring)
            for reached in _crawler_edges(imp):
                if reached == start or reached in via:
                    continue
                via[reached] = imp
                if _under(reached, *forbidden):
                    chain = [imp]
                    while chain[-1].module != start:
                        chain.append(via[chain[-1].module])
                    return chain[::-1]
                queue.append(reached)
    return []


def worker_reaches_engine_or_store(sources: dict[str, str] | None = None) -> list[str]:
    graph = {m: imports_of(m, (sources or {}).get(m)) for m in MODULES}
    bad = []
    for start in (m for m in MODULES if _under(m, "crawler.worker")):
        chain = _chain_to(start, graph, "crawler.engine", "crawler.store")
        if chain:
            steps = " -> ".join(str(imp) for imp in chain)
            bad.append(f"{start} reaches {chain[-1].target}: {steps}")
    return bad


def http_imports_outside_http(sources: dict[str, str] | None = None) -> list[str]:
    bad = []
    for module in (m for m in MODULES if _under(m, "crawler.http")):
        for imp in imports_of(module, (sources or {}).get(module)):
            if _under(imp.target, "crawler") and not _under(imp.target, "crawler.http"):
                bad.append(f"{imp} imports {imp.target}: crawler/http/ stands alone")
    return bad


RULES = [database_imports, worker_reaches_engine_or_store, http_imports_outside_http]


def test_every_module_is_seen() -> None:
    assert {"crawler.cli", "crawler.engine.loop", "crawler.worker.runner", "crawler.http"} <= set(
        MODULES
    )
    assert any(_under(m, "crawler.store") for m in MODULES)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_import_rule_holds(rule: object) -> None:
    problems = rule()  # type: ignore[operator]
    assert not problems, "\n".join(problems)


# --- the rules catch what they are for (a bad import added to a module's source) -------------


def _with_line(module: str, line: str) -> dict[str, str]:
    return {module: MODULES[module].read_text() + "\n" + line + "\n"}


def test_sqlite3_outside_store_is_named() -> None:
    problems = database_imports(_with_line("crawler.bench.run", "import sqlite3"))
    assert len(problems) == 1
    assert problems[0].startswith("crawler.bench.run (crawler/bench/run.py:")
    assert "import sqlite3" in problems[0]


def test_a_worker_reaching_the_store_through_another_module_is_named() -> None:
    sources = {
        **_with_line("crawler.worker.retry", "from crawler import markup"),
        **_with_line("crawler.markup", "def f():\n    from crawler.store import open_store"),
    }
    problems = worker_reaches_engine_or_store(sources)
    assert problems
    text = "\n".join(problems)
    assert "crawler.worker.retry reaches crawler.store" in text
    assert "from crawler import markup" in text and "from crawler.store import open_store" in text


def test_a_worker_process_leaves_the_engine_and_store_unloaded() -> None:
    """The same rule at run time: what a worker imports does not load the parent's code."""
    code = (
        "import sys, crawler.worker.process, crawler.worker.runner, crawler;"
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('crawler.engine', 'crawler.store', 'sqlite3', 'sqlite_utils'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_http_importing_the_rest_of_crawler_is_named() -> None:
    problems = http_imports_outside_http(
        _with_line("crawler.http.connection", "from ..urls import url_host")
    )
    assert len(problems) == 1
    assert problems[0].startswith("crawler.http.connection (crawler/http/connection.py:")
    assert "from ..urls import url_host) imports crawler.urls" in problems[0]
