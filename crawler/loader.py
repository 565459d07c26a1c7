"""Finding spider classes in a project's ``spiders/`` folder or in a single file.

How modules are named, so that a spider class pickles by reference in worker processes:

- a folder with ``__init__.py`` is imported as the package it is (``spiders.news``), with its
  parent directory on ``sys.path``, so relative imports between spider modules work;
- a plain folder's files, and a file given by path outside a package, are imported under a
  stable synthetic name, ``crawler_spider_<crc32 of the folder>_<stem>``, registered in
  ``sys.modules``. The folder goes on ``sys.path`` (as for a script) so a spider can import a
  helper module next to it.

A module that fails to import is reported with the file and line that failed and does not stop
the other modules from loading.

Raises :class:`~crawler.errors.SpiderLoadError` (a module could not be imported, or a file is
ambiguous) and :class:`~crawler.errors.SpiderNotFound` (no spider by that name, no such file).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
import zlib
from pathlib import Path
from types import ModuleType

from crawler.errors import SpiderLoadError, SpiderNotFound
from crawler.spider import Spider

__all__ = ["discover", "load_spider"]


def _describe_error(exc: BaseException, file: Path) -> str:
    """``file:line: Type: message``, pointing at the deepest line of ``file`` involved."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    if line is None:
        for frame in traceback.extract_tb(exc.__traceback__):
            if Path(frame.filename).resolve() == file:
                line = frame.lineno
    where = f"{file}:{line}" if line else str(file)
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{where}: {type(exc).__name__}: {message}".rstrip(": ")


def _package_root(folder: Path) -> tuple[Path, str] | None:
    """For a folder inside a package: (directory for sys.path, dotted package name)."""
    if not (folder / "__init__.py").is_file():
        return None
    parts = [folder.name]
    parent = folder.parent
    while (parent / "__init__.py").is_file():
        parts.insert(0, parent.name)
        parent = parent.parent
    return parent, ".".join(parts)


def _on_sys_path(directory: Path) -> None:
    entry = str(directory)
    if entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()


def _forget_stale_package(name: str, folder: Path) -> None:
    """Drop ``name`` (and its submodules) from sys.modules when it is another folder's."""
    top = name.partition(".")[0]
    module = sys.modules.get(top)
    if module is None:
        return
    paths = [Path(p).resolve() for p in getattr(module, "__path__", [])]
    root = folder
    for _ in name.split(".")[1:]:
        root = root.parent
    if root not in paths:
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]


def _import_file(file: Path) -> ModuleType:
    """Import one .py file (see the module docstring for the name it gets)."""
    file = file.resolve()
    package = _package_root(file.parent)
    if package is not None:
        sys_path_dir, dotted = package
        _on_sys_path(sys_path_dir)
        _forget_stale_package(dotted, file.parent)
        name = dotted if file.name == "__init__.py" else f"{dotted}.{file.stem}"
        return importlib.import_module(name)
    name = f"crawler_spider_{zlib.crc32(str(file.parent).encode()):08x}_{file.stem}"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(file):
        return existing
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    _on_sys_path(file.parent)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _spiders_in(module: ModuleType) -> list[type[Spider]]:
    """Spider classes *defined* in ``module`` (not imported into it) that have a name."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Spider)
        and obj is not Spider
        and obj.__module__ == module.__name__
        and isinstance(obj.name, str)
        and obj.name
    ]


def _load_module(file: Path) -> ModuleType:
    try:
        return _import_file(file)
    except (Exception, SystemExit) as exc:
        raise SpiderLoadError(_describe_error(exc, file.resolve())) from exc


def discover(
    path: str | Path = "spiders",
) -> tuple[dict[str, type[Spider]], list[tuple[str, str]]]:
    """Every spider in the folder ``path``, by name, and the modules that failed to import.

    Returns ``(spiders, errors)`` where ``errors`` holds ``(module_file, message)`` pairs; a
    missing folder and a spider name defined twice are reported there too.
    """
    folder = Path(path)
    spiders: dict[str, type[Spider]] = {}
    errors: list[tuple[str, str]] = []
    if not folder.is_dir():
        return spiders, [(str(folder), "no such folder")]
    files = sorted(folder.glob("*.py"))
    files = [f for f in files if f.name == "__init__.py" or not f.name.startswith("_")]
    for file in files:
        try:
            module = _load_module(file)
        except SpiderLoadError as exc:
            errors.append((str(file), str(exc)))
            continue
        for cls in _spiders_in(module):
            other = spiders.get(cls.name)
            if other is not None and other is not cls:
                errors.append(
                    (str(file), f"spider name {cls.name!r} is also used by {_where(other)}")
                )
                continue
            spiders[cls.name] = cls
    return spiders, errors


def _where(cls: type[Spider]) -> str:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None) or cls.__module__
    return f"{cls.__qualname__} in {file}"


def spider_file(cls: type[Spider]) -> str:
    """The file a spider class was defined in (for listings)."""
    module = sys.modules.get(cls.__module__)
    return str(getattr(module, "__file__", None) or cls.__module__)


def _looks_like_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def load_spider(target: str, path: str | Path = "spiders") -> type[Spider]:
    """The spider class for ``target``: a spider name found in ``path``, or a ``.py`` file."""
    if _looks_like_file(target):
        file = Path(target)
        if not file.is_file():
            raise SpiderNotFound(f"no such spider file: {target}")
        found = _spiders_in(_load_module(file))
        if not found:
            raise SpiderNotFound(f"{target} defines no Spider subclass with a name")
        if len(found) > 1:
            names = ", ".join(sorted(cls.name for cls in found))
            raise SpiderLoadError(
                f"{target} defines several spiders ({names}); run one by name instead"
            )
        return found[0]
    spiders, errors = discover(path)
    if target in spiders:
        return spiders[target]
    known = ", ".join(sorted(spiders)) or "none"
    message = f"no spider named {target!r} in {path}/ (found: {known})"
    broken = [msg for _, msg in errors if msg != "no such folder"]
    if broken:
        message += f"; {len(broken)} module(s) failed to import, first: {broken[0]}"
    elif errors:
        message = f"no spider named {target!r}: {path}/ is not a folder"
    raise SpiderNotFound(message)
