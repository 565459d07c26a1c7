"""crawler.store.export: round trips through JSON Lines and CSV, atomic output, clear errors.

On both backends (``crawl_db``): the same tables, rows and views in a SQLite file or a
PostgreSQL database. What is about a file (a missing one, one that is not SQLite) is SQLite's.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlite_utils

from crawler.errors import ExportError
from crawler.store.export import export_table
from tests.kit.postgres import PostgresServer

ITEMS: list[dict[str, Any]] = [
    {"title": "plain", "n": 1, "price": 9.99, "tags": '["a", "b"]', "note": None},
    {"title": 'quotes " and, commas', "n": -2, "price": 0.1 + 0.2, "tags": "[]", "note": ""},
    {"title": "line\nbreak\r\nand tab\t", "n": 2**62, "price": 1e-300, "tags": None, "note": "x"},
    {"title": "ünïcødé ☃ 𝄞", "n": 0, "price": -0.0, "tags": '{"k": {"v": 1}}', "note": "y"},
]
PAGES: list[dict[str, Any]] = [
    {"url": "http://a/0", "status": 200, "body": b"\x00\xffbinary<html>"},
    {"url": "http://a/1", "status": 304, "body": None},
]
# A dict value is stored by sqlite-utils as JSON text: it must stay text in the export.
DICT_ITEM = {"title": "dict", "meta": {"nested": [1, 2]}, "page_url": "http://a/x"}

Db = Path | str


def is_postgres(db: Db) -> bool:
    return isinstance(db, str)


def execute(db: Db, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    """SQL on either backend (``?`` placeholders); ``rows`` go to the last statement."""
    if is_postgres(db):
        with psycopg.connect(str(db)) as pg:
            *first, last = [sql.replace("?", "%s") for sql in statements]
            for sql in first:
                pg.execute(sql)
            pg.cursor().executemany(last, rows or [()])
        return
    with sqlite3.connect(db) as conn:
        *first, last = statements
        for sql in first:
            conn.execute(sql)
        conn.executemany(last, rows or [()])
    conn.close()


def fill(db: Db) -> None:
    """``items`` (the ITEMS then DICT_ITEM, in that order) and ``pages`` (with a BLOB)."""
    items = [dict(row, page_url=f"http://a/{i}", run_id=1) for i, row in enumerate(ITEMS)]
    if is_postgres(db):
        with psycopg.connect(str(db)) as pg:
            pg.execute(
                "CREATE TABLE items (title TEXT, n BIGINT, price DOUBLE PRECISION, tags TEXT,"
                " note TEXT, page_url TEXT, run_id BIGINT, meta TEXT)"
            )
            pg.cursor().executemany(
                "INSERT INTO items VALUES (%(title)s, %(n)s, %(price)s, %(tags)s, %(note)s,"
                " %(page_url)s, %(run_id)s, NULL)",
                items,
            )
            pg.execute(
                "INSERT INTO items (title, meta, page_url) VALUES (%s, %s, %s)",
                (DICT_ITEM["title"], json.dumps(DICT_ITEM["meta"]), DICT_ITEM["page_url"]),
            )
            pg.execute("CREATE TABLE pages (url TEXT PRIMARY KEY, status BIGINT, body BYTEA)")
            pg.cursor().executemany(
                "INSERT INTO pages VALUES (%(url)s, %(status)s, %(body)s)", PAGES
            )
        return
    database = sqlite_utils.Database(db)
    database.enable_wal()
    database.table("items").insert_all(items, alter=True)
    database.table("items").insert(DICT_ITEM, alter=True)
    database.table("pages").insert_all(PAGES, pk="url", columns={"body": bytes})
    database.close()


@pytest.fixture
def db(crawl_db: Callable[[str], Db]) -> Db:
    database = crawl_db("news")
    fill(database)
    return database


def table_rows(db: Db, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows, in the order the export promises (rowid; ctid on PostgreSQL)."""
    if is_postgres(db):
        with psycopg.connect(str(db)) as pg:
            cursor = pg.execute(f"select * from {table} order by ctid")
            found = [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in cursor.fetchall()
            ]
            return [d.name for d in cursor.description or ()], found
    with sqlite3.connect(db) as conn:
        cursor = conn.execute(f"select * from {table} order by rowid")
        return [d[0] for d in cursor.description], cursor.fetchall()


def test_jsonl_round_trip(db: Db, tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    assert export_table(db, "items", "jsonl", out) == len(ITEMS) + 1
    columns, rows = table_rows(db, "items")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        dict(zip(columns, r, strict=True)) for r in rows
    ]
    last = json.loads(lines[-1])
    assert json.loads(last["meta"]) == {"nested": [1, 2]}  # still JSON text, not an object


def test_csv_round_trip(db: Db, tmp_path: Path) -> None:
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
def test_blobs_as_base64(db: Db, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"pages.{fmt}"
    assert export_table(db, "pages", fmt, out) == 2  # type: ignore[arg-type]
    if fmt == "jsonl":
        first = json.loads(out.read_text().splitlines()[0])
        body = first["body"]
    else:
        with out.open(newline="") as f:
            body = next(csv.DictReader(f))["body"]
    assert base64.b64decode(body) == b"\x00\xffbinary<html>"


def test_blobs_skipped(db: Db) -> None:
    stream = io.StringIO()
    assert export_table(db, "pages", "jsonl", blobs="skip", stream=stream) == 2
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert rows == [{"url": "http://a/0", "status": 200}, {"url": "http://a/1", "status": 304}]


def test_stdout_by_default(db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_table(db, "pages", "csv", blobs="skip") == 2
    assert capsys.readouterr().out.splitlines() == [
        "url,status",
        "http://a/0,200",
        "http://a/1,304",
    ]


def test_empty_table_csv_has_a_header(crawl_db: Callable[[str], Db], tmp_path: Path) -> None:
    path = crawl_db("e")
    execute(path, "CREATE TABLE items (a TEXT, b INTEGER)")
    out = tmp_path / "e.csv"
    assert export_table(path, "items", "csv", out) == 0
    assert out.read_text().splitlines() == ["a,b"]


def test_replaces_an_existing_file_and_leaves_no_temp(db: Db, tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    out.write_text("old\n")
    export_table(db, "items", "jsonl", out)
    assert out.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_failure_mid_export_keeps_the_old_file(db: Db, tmp_path: Path) -> None:
    # A view whose 1001st row cannot be computed: the export fails after writing 1000 rows.
    check = "v::json" if is_postgres(db) else "json(v)"
    execute(
        db,
        "create table raw (v text)",
        f"create view checked as select {check} as v from raw",
        "insert into raw values (?)",
        rows=[('{"ok": 1}',)] * 1000 + [("{bad",)],
    )
    out = tmp_path / "checked.jsonl"
    out.write_text("previous export\n")
    malformed = "invalid input syntax for type json" if is_postgres(db) else "malformed JSON"
    with pytest.raises(ExportError, match=f"reading 'checked' from .* failed: .*{malformed}"):
        export_table(db, "checked", "jsonl", out)
    assert out.read_text() == "previous export\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_view_is_exported_like_a_table(db: Db) -> None:
    execute(db, "create view titles as select title, n from items where n > 0")
    stream = io.StringIO()
    assert export_table(db, "titles", "jsonl", stream=stream) == 2
    assert sorted(json.loads(line)["n"] for line in stream.getvalue().splitlines()) == [1, 2**62]


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no database at"):
        export_table(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()  # never created by a read


def test_missing_postgresql_database(postgres: PostgresServer) -> None:
    url = postgres.database().rpartition("/")[0] + "/nope"
    with pytest.raises(ExportError, match=r'cannot open .*/nope: .*database "nope" does not exist'):
        export_table(url)
    with psycopg.connect(postgres.admin_url) as pg:  # never created by a read
        assert pg.execute("SELECT 1 FROM pg_database WHERE datname = 'nope'").fetchall() == []


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ExportError, match="cannot read"):
        export_table(path)


def test_missing_table_lists_the_tables(db: Db) -> None:
    with pytest.raises(ExportError, match=r"no table 'itemz' .*tables: items, pages"):
        export_table(db, "itemz")


def test_injection_in_the_table_name_is_just_a_missing_table(db: Db) -> None:
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
def test_bad_arguments(db: Db, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export_table(db, **kw)


def test_missing_output_folder(db: Db, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no folder"):
        export_table(db, out=tmp_path / "missing" / "x.jsonl")
