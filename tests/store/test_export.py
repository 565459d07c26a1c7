"""crawler.store.export: round trips through JSON Lines and CSV, atomic output, clear errors."""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from crawler.errors import ExportError
from crawler.store.export import export_table

ITEMS: list[dict[str, Any]] = [
    {"title": "plain", "n": 1, "price": 9.99, "tags": '["a", "b"]', "note": None},
    {"title": 'quotes " and, commas', "n": -2, "price": 0.1 + 0.2, "tags": "[]", "note": ""},
    {"title": "line\nbreak\r\nand tab\t", "n": 2**62, "price": 1e-300, "tags": None, "note": "x"},
    {"title": "ünïcødé ☃ 𝄞", "n": 0, "price": -0.0, "tags": '{"k": {"v": 1}}', "note": "y"},
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "news.db"
    database = sqlite_utils.Database(path)
    database.enable_wal()
    items = database.table("items")
    items.insert_all(
        [dict(row, page_url=f"http://a/{i}", run_id=1) for i, row in enumerate(ITEMS)],
        alter=True,
    )
    # A dict value is stored by sqlite-utils as JSON text: it must stay text in the export.
    items.insert(
        {"title": "dict", "meta": {"nested": [1, 2]}, "page_url": "http://a/x"}, alter=True
    )
    pages = database.table("pages")
    pages.insert_all(
        [
            {"url": "http://a/0", "status": 200, "body": b"\x00\xffbinary<html>"},
            {"url": "http://a/1", "status": 304, "body": None},
        ],
        pk="url",
        columns={"body": bytes},
    )
    database.close()
    return path


def table_rows(path: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(f"select * from {table} order by rowid")
        return [d[0] for d in cursor.description], cursor.fetchall()


def test_jsonl_round_trip(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    assert export_table(db, "items", "jsonl", out) == len(ITEMS) + 1
    columns, rows = table_rows(db, "items")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        dict(zip(columns, r, strict=True)) for r in rows
    ]
    last = json.loads(lines[-1])
    assert json.loads(last["meta"]) == {"nested": [1, 2]}  # still JSON text, not an object


def test_csv_round_trip(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    assert export_table(db, "items", "csv", out) == len(ITEMS) + 1
    columns, rows = table_rows(db, "items")
    with out.open(newline="", encoding="utf-8") as f:
        header, *records = list(csv.reader(f))
    assert header == columns
    assert records == [["" if v is None else str(v) for v in row] for row in rows]
    # Floats survive the text form exactly.
    assert float(records[1][columns.index("price")]) == 0.1 + 0.2


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_blobs_as_base64(db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"pages.{fmt}"
    assert export_table(db, "pages", fmt, out) == 2  # type: ignore[arg-type]
    if fmt == "jsonl":
        first = json.loads(out.read_text().splitlines()[0])
        body = first["body"]
    else:
        with out.open(newline="") as f:
            body = next(csv.DictReader(f))["body"]
    assert base64.b64decode(body) == b"\x00\xffbinary<html>"


def test_blobs_skipped(db: Path) -> None:
    stream = io.StringIO()
    assert export_table(db, "pages", "jsonl", blobs="skip", stream=stream) == 2
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert rows == [{"url": "http://a/0", "status": 200}, {"url": "http://a/1", "status": 304}]


def test_stdout_by_default(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_table(db, "pages", "csv", blobs="skip") == 2
    assert capsys.readouterr().out.splitlines() == [
        "url,status",
        "http://a/0,200",
        "http://a/1,304",
    ]


def test_empty_table_csv_has_a_header(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    sqlite_utils.Database(path).table("items").create({"a": str, "b": int})
    out = tmp_path / "e.csv"
    assert export_table(path, "items", "csv", out) == 0
    assert out.read_text().splitlines() == ["a,b"]


def test_replaces_an_existing_file_and_leaves_no_temp(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    out.write_text("old\n")
    export_table(db, "items", "jsonl", out)
    assert out.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_failure_mid_export_keeps_the_old_file(db: Path, tmp_path: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("create table raw (v text)")
        conn.executemany("insert into raw values (?)", [('{"ok": 1}',)] * 1000 + [("{bad",)])
        conn.execute("create view checked as select json(v) as v from raw")
    out = tmp_path / "checked.jsonl"
    out.write_text("previous export\n")
    with pytest.raises(ExportError, match="malformed JSON"):
        export_table(db, "checked", "jsonl", out)
    assert out.read_text() == "previous export\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no database at"):
        export_table(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()  # never created by a read


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ExportError, match="cannot read"):
        export_table(path)


def test_missing_table_lists_the_tables(db: Path) -> None:
    with pytest.raises(ExportError, match=r"no table 'itemz' .*tables: items, pages"):
        export_table(db, "itemz")


def test_injection_in_the_table_name_is_just_a_missing_table(db: Path) -> None:
    with pytest.raises(ExportError, match="no table"):
        export_table(db, 'items"; drop table items; --')
    assert table_rows(db, "items")[1]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"fmt": "xml"}, "unknown format"),
        ({"blobs": "hex"}, "unknown blobs"),
    ],
)
def test_bad_arguments(db: Path, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export_table(db, **kw)


def test_missing_output_folder(db: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no folder"):
        export_table(db, out=tmp_path / "missing" / "x.jsonl")
