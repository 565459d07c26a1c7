"""Item rules in the worker (crawler/worker/validate.py): keys, JSON Schema, validate_item."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from crawler.messages import Failure
from crawler.spider import Spider
from crawler.worker.validate import ItemRules, key_of

SCHEMA = {
    "type": "object",
    "required": ["sku", "price"],
    "properties": {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
}


def apply(spider: Spider, items: list[dict[str, Any]]) -> tuple[Any, Any, list[Failure]]:
    failures: list[Failure] = []
    kept, keys = ItemRules(spider).apply("http://x.test/", items, failures)
    return kept, keys, failures


def test_key_of_a_field_a_tuple_and_a_method() -> None:
    assert key_of("sku", {"sku": "A1"}) == "A1"
    assert key_of("sku", {"sku": 7}) == "7"
    assert key_of(("shop", "sku"), {"shop": "s", "sku": 7}) == '["s",7]'
    assert key_of(lambda item: item["a"] + item["b"], {"a": "x", "b": "y"}) == "xy"
    assert key_of("sku", {"sku": ""}) is None
    assert key_of(("shop", "sku"), {"sku": 1}) is None
    with pytest.raises(TypeError):
        key_of(3, {})


def test_a_method_item_key_and_an_item_without_its_key() -> None:
    class S(Spider):
        name = "s"

        def item_key(self, item: dict[str, Any]) -> object:  # type: ignore[override]
            return item.get("id")

    kept, keys, failures = apply(S(), [{"id": 1}, {"other": 2}])
    assert kept == ({"id": 1},) and keys == ("1",)
    assert [(f.kind, f.message) for f in failures] == [("item", "item_key(): missing (item_key)")]

    class T(Spider):
        name = "t"
        item_key = ("shop", "sku")

    kept, keys, failures = apply(T(), [{"shop": "s", "sku": 1}, {"sku": 2}])
    assert keys == ('["s",1]',)
    assert [f.message for f in failures] == ["shop, sku: missing (item_key)"]


def test_item_schema_refuses_naming_the_field_and_the_rule() -> None:
    class S(Spider):
        name = "s"
        item_key = "sku"
        item_schema = SCHEMA

    items = [{"sku": "a", "price": 1}, {"sku": "b", "price": -1}, {"sku": "c"}, {"price": 2}]
    kept, keys, failures = apply(S(), items)
    assert kept == ({"sku": "a", "price": 1},) and keys == ("a",)
    messages = [f.message for f in failures]
    assert messages[0].startswith("price: minimum 0:")
    assert messages[1].startswith("price: required")
    assert messages[2].startswith("sku: required")
    assert all(f.kind == "item" and f.url == "http://x.test/" for f in failures)


def test_an_invalid_schema_is_refused_when_the_rules_are_built() -> None:
    class S(Spider):
        name = "s"
        item_schema = {"type": "no-such-type"}

    with pytest.raises(jsonschema.SchemaError):
        ItemRules(S())


def test_validate_item_and_its_exceptions() -> None:
    class S(Spider):
        name = "s"

        def validate_item(self, item: dict[str, Any]) -> str | None:
            if item["price"] is None:
                raise ValueError("no price at all")
            return None if item["price"] > 0 else "price: must be positive"

    kept, keys, failures = apply(S(), [{"price": 1}, {"price": 0}, {"price": None}])
    assert kept == ({"price": 1},) and keys == ()
    assert [f.message for f in failures] == [
        "price: must be positive",
        "validate_item raised ValueError: no price at all",
    ]


def test_a_spider_without_rules_is_inactive() -> None:
    class S(Spider):
        name = "s"

    assert not ItemRules(S()).active
