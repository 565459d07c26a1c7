"""Items checked in the worker, before they travel: the spider's rules and each item's identity.

A spider may refuse items (``item_schema``, a JSON Schema; ``validate_item(item)``, a
method returning what is wrong) and may name what identifies an item across runs
(``item_key``: a field, a tuple of fields, or a method). :class:`ItemRules` applies them to a
callback's items: the valid ones go on with their keys, each refused one becomes a
``Failure`` of kind ``item`` naming the field and the rule. An item whose key is missing is
refused too, since it could never be matched with its next version (docs/changes.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from crawler.messages import Failure
from crawler.spider import Spider

__all__ = ["ItemRules", "key_of"]

_KEY_SEPARATORS = (",", ":")


def key_of(spec: object, item: dict[str, Any]) -> str | None:
    """The identity ``spec`` (a field, a tuple of fields, or a callable) gives ``item``:
    the field's text for one field, a JSON list for several; ``None`` when a part is missing."""
    if isinstance(spec, str):
        value = item.get(spec)
        return None if value is None or value == "" else _text(value)
    if isinstance(spec, tuple | list):
        values = [item.get(name) for name in spec]
        if any(v is None or v == "" for v in values):
            return None
        return json.dumps(values, ensure_ascii=False, separators=_KEY_SEPARATORS, default=str)
    if callable(spec):
        value = spec(item)
        return None if value is None or value == "" else _text(value)
    raise TypeError(f"item_key must be a field name, a tuple of names or a method: {spec!r}")


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


class ItemRules:
    """One spider's item rules, prepared once per worker (the schema's validator is built once)."""

    def __init__(self, spider: Spider) -> None:
        self.key = spider.item_key
        self.validate = spider.validate_item
        self.custom = type(spider).validate_item is not Spider.validate_item
        self.schema: Any = None
        if spider.item_schema is not None:
            import jsonschema  # type: ignore[import-untyped]  # only spiders with a schema

            cls = jsonschema.validators.validator_for(spider.item_schema)
            cls.check_schema(spider.item_schema)
            self.schema = cls(spider.item_schema)
        self.active = self.key is not None or self.custom or self.schema is not None

    def __repr__(self) -> str:
        return f"<ItemRules key={self.key!r} schema={self.schema is not None}>"

    def apply(
        self, url: str, items: Iterable[dict[str, Any]], failures: list[Failure]
    ) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
        """The items that pass and their keys (empty without ``item_key``); a ``Failure``
        in ``failures`` for each refused one."""
        kept: list[dict[str, Any]] = []
        keys: list[str] = []
        for item in items:
            problem = self._problem(item)
            key = None
            if problem is None and self.key is not None:
                try:
                    key = key_of(self.key, item)
                except Exception as exc:
                    problem = f"item_key raised {type(exc).__name__}: {exc}"
                else:
                    if key is None:
                        problem = f"{_key_name(self.key)}: missing (item_key)"
            if problem is not None:
                failures.append(Failure(url, "item", problem))
                continue
            kept.append(item)
            if key is not None:
                keys.append(key)
        return tuple(kept), tuple(keys)

    def _problem(self, item: dict[str, Any]) -> str | None:
        if self.schema is not None:
            error = next(iter(self.schema.iter_errors(item)), None)
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path) or _field_of(error)
                return f"{where}: {error.validator} {error.validator_value!r}: {error.message}"
        if self.custom:
            try:
                problem = self.validate(item)
            except Exception as exc:
                return f"validate_item raised {type(exc).__name__}: {exc}"
            if problem:
                return str(problem)
        return None


def _key_name(spec: object) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, tuple | list):
        return ", ".join(map(str, spec))
    return "item_key()"


def _field_of(error: Any) -> str:
    # A "required" error sits on the item itself; its message names the missing field.
    if error.validator == "required":
        for name in error.validator_value:
            if name in error.message:
                return str(name)
    return "(item)"
