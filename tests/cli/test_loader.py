"""crawler.loader: finding spiders in folders and files (written into tmp_path), as the CLI does."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest

from crawler import Spider
from crawler.errors import SpiderLoadError, SpiderNotFound
from crawler.loader import discover, load_spider
from tests.kit.project import make_project

GOOD = """
from crawler import Spider

class {cls}(Spider):
    name = "{name}"
    start_urls = ["http://127.0.0.1:1/"]

    def parse(self, response):
        yield {{"url": response.url}}
"""


def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def spiders_folder(tmp_path: Path) -> Path:
    """A project's spiders/: two spiders, broken, private and non-Python files, a base class."""
    base = """
        from crawler import Spider

        class Base(Spider):  # no name: a base class, not a spider
            pass
        """
    files = {
        "news.py": GOOD.format(cls="News", name="news"),
        "shop.py": GOOD.format(cls="Shop", name="shop"),
        "broken.py": "import does_not_exist_anywhere\n",
        "syntax.py": "def f(:\n",
        "_private.py": GOOD.format(cls="Hidden", name="hidden"),
        "notes.txt": "not python",
        "base.py": base,
    }
    return make_project(tmp_path, files) / "spiders"


@pytest.mark.parametrize("package", [False, True])
def test_discover_collects_named_spiders_and_reports_broken_modules(
    spiders_folder: Path, package: bool
) -> None:
    if package:
        (spiders_folder / "__init__.py").write_text("")
    spiders, errors = discover(spiders_folder)
    assert sorted(spiders) == ["news", "shop"]
    assert spiders["news"].__name__ == "News" and issubclass(spiders["news"], Spider)
    failed = dict(errors)
    assert set(failed) == {str(spiders_folder / "broken.py"), str(spiders_folder / "syntax.py")}
    assert "ModuleNotFoundError" in failed[str(spiders_folder / "broken.py")]
    assert "broken.py:1" in failed[str(spiders_folder / "broken.py")]
    assert "SyntaxError" in failed[str(spiders_folder / "syntax.py")]


def test_package_modules_get_their_package_names_and_relative_imports_work(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "spiders"
    write(pkg, "__init__.py", "")
    write(pkg, "common.py", "START = 'http://127.0.0.1:1/start'\n")
    write(
        pkg,
        "blog.py",
        """
        from crawler import Spider
        from .common import START

        class Blog(Spider):
            name = "blog"
            start_urls = [START]
        """,
    )
    spiders, errors = discover(pkg)
    assert errors == []
    assert spiders["blog"].__module__ == "spiders.blog"
    assert spiders["blog"].start_urls == ["http://127.0.0.1:1/start"]
    # run by file path inside the package: the very same class
    assert load_spider(str(pkg / "blog.py")) is spiders["blog"]


def test_plain_folder_modules_can_import_a_helper_next_to_them(tmp_path: Path) -> None:
    folder = tmp_path / "myspiders"
    write(folder, "helpers_for_test_loader.py", "PAGES = ['http://127.0.0.1:1/h']\n")
    write(
        folder,
        "h.py",
        """
        from crawler import Spider
        from helpers_for_test_loader import PAGES

        class H(Spider):
            name = "h"
            start_urls = PAGES
        """,
    )
    spiders, errors = discover(folder)
    assert errors == [] and spiders["h"].start_urls == ["http://127.0.0.1:1/h"]


def test_spider_classes_pickle_by_reference(spiders_folder: Path) -> None:
    cls = load_spider("news", path=spiders_folder)
    assert cls.__module__ in sys.modules
    assert pickle.loads(pickle.dumps(cls)) is cls
    # loading again gives the same class, not a re-executed copy
    assert load_spider("news", path=spiders_folder) is cls
    assert load_spider(str(spiders_folder / "news.py")) is cls


def test_same_folder_name_in_two_projects_does_not_mix(tmp_path: Path) -> None:
    for project in ("one", "two"):
        folder = tmp_path / project / "spiders"
        write(folder, "__init__.py", "")
        write(folder, "s.py", GOOD.format(cls="S", name=project))
    first, _ = discover(tmp_path / "one" / "spiders")
    second, _ = discover(tmp_path / "two" / "spiders")
    assert list(first) == ["one"] and list(second) == ["two"]


def test_duplicate_names_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "spiders"
    write(folder, "a.py", GOOD.format(cls="A", name="same"))
    write(folder, "b.py", GOOD.format(cls="B", name="same"))
    spiders, errors = discover(folder)
    assert spiders["same"].__name__ == "A"
    assert len(errors) == 1 and errors[0][0].endswith("b.py") and "also used" in errors[0][1]


def test_missing_folder(tmp_path: Path) -> None:
    spiders, errors = discover(tmp_path / "nope")
    assert spiders == {} and errors == [(str(tmp_path / "nope"), "no such folder")]
    with pytest.raises(SpiderNotFound, match="not a folder"):
        load_spider("x", path=tmp_path / "nope")


def test_unknown_name_lists_what_was_found_and_what_failed(spiders_folder: Path) -> None:
    with pytest.raises(SpiderNotFound) as info:
        load_spider("nope", path=spiders_folder)
    message = str(info.value)
    assert "'nope'" in message and "news, shop" in message and "failed to import" in message
    assert isinstance(info.value, LookupError)


def test_load_by_file(tmp_path: Path) -> None:
    file = write(tmp_path, "single.py", GOOD.format(cls="Single", name="single"))
    assert load_spider(str(file)).name == "single"
    with pytest.raises(SpiderNotFound, match="no such spider file"):
        load_spider(str(tmp_path / "missing.py"))


def test_file_imports_a_spider_from_elsewhere(tmp_path: Path) -> None:
    write(tmp_path, "lib_for_test_loader.py", GOOD.format(cls="Lib", name="lib"))
    file = write(
        tmp_path,
        "mine.py",
        """
        from lib_for_test_loader import Lib

        class Mine(Lib):
            name = "mine"
        """,
    )
    assert load_spider(str(file)).name == "mine"  # the imported Lib is not a candidate


def test_file_with_several_spiders_is_ambiguous(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "two.py",
        GOOD.format(cls="A", name="a")
        + GOOD.format(cls="B", name="b").replace("from crawler import Spider", ""),
    )
    with pytest.raises(SpiderLoadError, match=r"several spiders \(a, b\)"):
        load_spider(str(file))


def test_file_without_spider_or_broken(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.py", "x = 1\n")
    with pytest.raises(SpiderNotFound, match="defines no Spider"):
        load_spider(str(empty))
    broken = write(tmp_path, "raises.py", "\n\nraise RuntimeError('at import')\n")
    with pytest.raises(SpiderLoadError, match=r"raises\.py:3: RuntimeError: at import"):
        load_spider(str(broken))
    exits = write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(SpiderLoadError, match="SystemExit"):
        load_spider(str(exits))
    assert not any(getattr(m, "__file__", None) == str(broken) for m in list(sys.modules.values()))
