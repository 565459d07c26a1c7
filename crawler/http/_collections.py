"""``HTTPHeaderDict``: a case-insensitive, order-keeping multi-dict of header fields.

Each entry maps the lower-cased name to a list ``[original_name, value, value...]`` so a
lookup is one dict hit, repeated fields keep their separate values, and the name the peer
used is kept for ``items()``. The response parser builds that store directly
(:meth:`HTTPHeaderDict._from_store`), which is why construction costs one dict per head.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar, overload

__all__ = ["HTTPHeaderDict"]

_T = TypeVar("_T")
_Sentinel = object()


class HTTPHeaderDict(MutableMapping[str, str]):
    """Case-insensitive header mapping; ``h[name]`` joins repeated fields with ``", "``.

    >>> h = HTTPHeaderDict()
    >>> h.add("Set-Cookie", "a=1"); h.add("set-cookie", "b=2")
    >>> h["SET-COOKIE"], h.getlist("set-cookie")
    ('a=1, b=2', ['a=1', 'b=2'])
    """

    __slots__ = ("_store",)

    def __init__(
        self, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None, **kw: str
    ) -> None:
        self._store: dict[str, list[str]] = {}
        if headers is not None:
            self.extend(headers)
        if kw:
            self.extend(kw)

    @classmethod
    def _from_store(cls, store: dict[str, list[str]]) -> HTTPHeaderDict:
        new = cls.__new__(cls)
        new._store = store
        return new

    def __getitem__(self, key: str) -> str:
        vals = self._store[key.lower()]
        if len(vals) == 2:
            return vals[1]
        return ", ".join(vals[1:])

    def __setitem__(self, key: str, value: str) -> None:
        self._store[key.lower()] = [key, value]

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        for vals in self._store.values():
            yield vals[0]

    def __len__(self) -> int:
        return len(self._store)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping) and not isinstance(other, HTTPHeaderDict):
            other = HTTPHeaderDict(other)
        if not isinstance(other, HTTPHeaderDict):
            return NotImplemented
        mine = {k: v[1:] for k, v in self._store.items()}
        theirs = {k: v[1:] for k, v in other._store.items()}
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.itermerged())!r})"

    def add(self, key: str, value: str) -> None:
        """Add one more field named ``key``, keeping any earlier ones."""
        lower = key.lower()
        vals = self._store.get(lower)
        if vals is None:
            self._store[lower] = [key, value]
        else:
            vals.append(value)

    def extend(self, other: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Add every field of ``other`` (a mapping, an ``HTTPHeaderDict`` or pairs)."""
        if isinstance(other, HTTPHeaderDict):
            for key, value in other.iteritems():
                self.add(key, value)
        elif isinstance(other, Mapping):
            for key in other:
                self.add(key, other[key])
        else:
            for key, value in other:
                self.add(key, value)

    @overload
    def getlist(self, key: str) -> list[str]: ...
    @overload
    def getlist(self, key: str, default: _T) -> list[str] | _T: ...
    def getlist(self, key: str, default: Any = _Sentinel) -> Any:
        """Every value of ``key`` one by one (``[]`` or ``default`` when absent)."""
        vals = self._store.get(key.lower())
        if vals is None:
            return [] if default is _Sentinel else default
        return vals[1:]

    def iteritems(self) -> Iterator[tuple[str, str]]:
        """Each field as sent: repeated names appear once per value."""
        for vals in self._store.values():
            name = vals[0]
            for value in vals[1:]:
                yield name, value

    def itermerged(self) -> Iterator[tuple[str, str]]:
        """Each name once, its values joined with ``", "``."""
        for vals in self._store.values():
            yield vals[0], ", ".join(vals[1:])

    def copy(self) -> HTTPHeaderDict:
        return HTTPHeaderDict._from_store({k: list(v) for k, v in self._store.items()})
