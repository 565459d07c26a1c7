"""Crawl settings: one frozen value, resolved from defaults, the spider and the command line.

Precedence, lowest first: the defaults below, the spider's ``custom_settings``, then
``-s key=value`` from the command line (and the options that mirror common settings).
Command-line values arrive as strings and are converted by the field's declared kind, so
``-s per_host=4`` and ``custom_settings = {"per_host": 4}`` end up the same. An unknown name
or a value that does not convert raises :class:`SettingsError`, which the CLI reports as a
usage error (exit code 2).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crawler import __version__
from crawler.errors import SettingsError
from crawler.http import ProxyConfig, redact_proxy_url
from crawler.http.util.resolve import split_rule

__all__ = [
    "DEFAULT_USER_AGENT",
    "Settings",
    "host_rules",
    "parse_bool",
    "parse_duration",
    "parse_size",
    "resolve_settings",
]

DEFAULT_USER_AGENT = f"crawler/{__version__}"


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmg]?b?)\s*$", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"90"``, ``"30s"``, ``"15m"``, ``"2h"``, ``"1d"``.

    Compound forms such as ``"1h30m"`` are accepted too. Negative values are rejected.
    """
    if isinstance(value, bool):
        raise SettingsError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise SettingsError(f"duration must not be negative: {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"not a duration: {value!r}")
    text = value.strip().lower()
    total = 0.0
    # Consume "<number><unit>" pieces left to right so "1h30m" works.
    for piece in re.findall(r"(?:\d+(?:\.\d*)?|\.\d+)[smhdw]?|\S", text):
        m = _DURATION_RE.match(piece)
        if not m:
            raise SettingsError(f"not a duration: {value!r} (use e.g. 90, 30s, 15m, 2h, 1d)")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    return total


def parse_size(value: object) -> int:
    """Bytes from a number or a string like ``"10MB"``, ``"512k"``, ``"1g"``."""
    if isinstance(value, bool):
        raise SettingsError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SettingsError(f"size must not be negative: {value!r}")
        return value
    if isinstance(value, float) and value >= 0:
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise SettingsError(f"not a size: {value!r} (use e.g. 10485760, 512k, 10MB)")


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise SettingsError(f"not a boolean: {value!r} (use true/false)")


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise SettingsError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise SettingsError(f"not an integer: {value!r}")


def _parse_float(value: object) -> float:
    if isinstance(value, bool):
        raise SettingsError(f"not a number: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise SettingsError(f"not a number: {value!r}")


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"not a string: {value!r}")
    return value


# What a ``host_settings`` entry may set, with the kind each value converts by.
HOST_SETTING_KINDS = {"per_host": "int", "delay": "duration"}


def _parse_hosts(value: object) -> dict[str, dict[str, Any]]:
    """``{"*.example.com": {"per_host": 4, "delay": 1.0}}``, or the same as a JSON string."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise SettingsError(f"not a JSON object: {exc}") from None
    if not isinstance(value, Mapping):
        raise SettingsError(f"not a mapping of host patterns: {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for pattern, rules in value.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise SettingsError(f"host pattern must be a non-empty string: {pattern!r}")
        if not isinstance(rules, Mapping):
            raise SettingsError(f"{pattern}: not a mapping of settings: {rules!r}")
        entry: dict[str, Any] = {}
        for name, raw in rules.items():
            kind = HOST_SETTING_KINDS.get(name)
            if kind is None:
                known = ", ".join(sorted(HOST_SETTING_KINDS))
                raise SettingsError(f"{pattern}: unknown host setting {name!r} (known: {known})")
            entry[name] = _KIND_PARSERS[kind](raw)
            if entry[name] < (1 if name == "per_host" else 0):
                raise SettingsError(f"{pattern}: {name} out of range: {raw!r}")
        out[pattern.strip().lower()] = entry
    return out


def host_rules(host_settings: Mapping[str, Mapping[str, Any]], host: str) -> dict[str, Any]:
    """The ``host_settings`` entry for ``host`` (``name`` or ``name:port``): the most specific
    matching pattern wins: an exact name first, then the glob with the most literal characters.
    A pattern with a port matches only that port; one without matches every port."""
    host = host.lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") and ":" in host else host
    best: tuple[int, int] | None = None
    found: dict[str, Any] = {}
    for pattern, rules in host_settings.items():
        target = host if ":" in pattern and not pattern.endswith("]") else name
        if pattern == target:
            rank = (2, len(pattern))
        elif fnmatch.fnmatchcase(target, pattern):
            rank = (1, len(pattern) - pattern.count("*") - pattern.count("?"))
        else:
            continue
        if best is None or rank > best:
            best, found = rank, dict(rules)
    return found


def _parse_opt_float(value: object) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    return _parse_float(value)


def _parse_opt_duration(value: object) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "never", "off")):
        return None
    return parse_duration(value)


def _parse_fill(value: object) -> dict[str, float] | None:
    """``{"price": 0.95}``, or ``"price=0.95,name=1"`` from the command line; empty: off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    if isinstance(value, str):
        pairs: list[tuple[str, object]] = []
        for part in value.split(","):
            name, eq, rate = part.partition("=")
            if not eq or not name.strip():
                raise SettingsError(f"not field=rate pairs: {value!r} (e.g. price=0.95,name=1)")
            pairs.append((name.strip(), rate))
        value = dict(pairs)
    if not isinstance(value, Mapping):
        raise SettingsError(f"not a mapping of field to fill rate: {value!r}")
    out = {}
    for name, rate in value.items():
        number = _parse_float(rate)
        if not 0 <= number <= 1:
            raise SettingsError(f"fill rate of {name!r} must be between 0 and 1: {rate!r}")
        out[str(name)] = number
    return out or None


def parse_proxies(value: object) -> tuple[str, ...]:
    """Proxy URLs from one URL, a list of them, or a comma-separated string; each checked."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise SettingsError(f"not a proxy URL or a list of them: {type(value).__name__}")
    for item in items:
        if not isinstance(item, str):
            raise SettingsError(f"not a proxy URL: {item!r}")
        try:
            ProxyConfig.from_url(item)
        except ValueError as exc:  # the message never holds the credentials
            raise SettingsError(str(exc)) from None
    return tuple(items)


def parse_resolve(value: object) -> tuple[tuple[str, str], ...]:
    """``{"name[:port]": "address"}`` (globs allowed), or ``"name=address,name2=address"``."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            name, sep, address = part.partition("=")
            if not sep:
                raise SettingsError(f"resolve wants name=address pairs, not {part!r}")
            pairs.append((name.strip(), address.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = [tuple(p) for p in value]
    else:
        raise SettingsError(f"resolve wants a mapping of names to addresses, not {value!r}")
    out = []
    for name, address in pairs:
        if not isinstance(name, str) or not isinstance(address, str) or not address.strip():
            raise SettingsError(f"resolve entry {name!r}: {address!r} is not name -> address")
        try:
            split_rule(name)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        out.append((name.strip().lower(), address.strip()))
    return tuple(out)


_KIND_PARSERS = {
    "int": _parse_int,
    "float": _parse_float,
    "bool": parse_bool,
    "str": _parse_str,
    "duration": parse_duration,
    "size": parse_size,
    "opt_float": _parse_opt_float,
    "opt_duration": _parse_opt_duration,
    "fill": _parse_fill,
    "hosts": _parse_hosts,
    "proxies": parse_proxies,
    "resolve": parse_resolve,
}


def _setting(default: Any, kind: str, doc: str) -> Any:
    return field(default=default, metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every crawl setting. Names are a contract (``-s name=value`` uses them)."""

    workers: int = _setting(0, "int", "worker processes; 0 means the number of CPUs")
    per_host: int = _setting(2, "int", "connections per host (the pool's maxsize, block=True)")
    delay: float = _setting(0.0, "duration", "seconds between request starts to one host")
    timeout: float = _setting(30.0, "duration", "seconds, connect and read")
    retries: int = _setting(3, "int", "retries for connection errors, 429 and 5xx")
    max_pages: int = _setting(0, "int", "stop after this many pages (0: no limit)")
    max_items: int = _setting(0, "int", "stop after this many items (0: no limit)")
    max_depth: int = _setting(0, "int", "do not follow links deeper than this (0: no limit)")
    max_runtime: float = _setting(0.0, "duration", "stop after this long (0: no limit)")
    max_redirects: int = _setting(20, "int", "hops in one redirect chain")
    max_body_size: int = _setting(10 * 1024 * 1024, "size", "decoded bytes kept per response")
    max_url_length: int = _setting(2083, "int", "longer URLs are skipped and counted")
    max_links_per_page: int = _setting(10000, "int", "links taken from one page")
    store_body: bool = _setting(True, "bool", "keep response bodies in `pages`")
    store_links: bool = _setting(False, "bool", "keep the link graph in `links`")
    user_agent: str = _setting(DEFAULT_USER_AGENT, "str", "the User-Agent header")
    # Politeness and unattended runs (issue 4).
    robots: bool = _setting(True, "bool", "fetch and obey robots.txt")
    crawl_delay_max: float = _setting(30.0, "duration", "cap on a robots.txt Crawl-delay")
    sitemaps: bool = _setting(True, "bool", "follow Sitemap: lines of robots.txt")
    recrawl_after: float | None = _setting(None, "opt_duration", "revisit pages older than this")
    max_error_rate: float | None = _setting(None, "opt_float", "exit 1 above this error share")
    min_items: int = _setting(0, "int", "exit 1 when fewer items were scraped (0: off)")
    # Quality gates and the end-of-run hook (issue 12, docs/changes.md).
    min_field_fill: Mapping[str, float] | None = _setting(
        None, "fill", "exit 1 when a field is filled in fewer items (price=0.95,name=1)"
    )
    max_drop: float | None = _setting(
        None, "opt_float", "exit 1 when a fill rate or item count drops by more (vs 5 runs)"
    )
    on_finish: str = _setting("", "str", "shell command run after the run, summary JSON on stdin")

    # Adaptive politeness and per-host rules (issue 11).
    autothrottle: bool = _setting(True, "bool", "adapt each host's concurrency to its answers")
    host_settings: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"kind": "hosts", "doc": "per_host/delay by host glob; most specific wins"},
    )
    contact: str = _setting("", "str", "a URL or address added to the default User-Agent")

    # Proxies and name pinning (issue 11).
    proxy: tuple[str, ...] = _setting(
        (), "proxies", "proxy URL, or a list rotated per host (http, socks5, socks5h)"
    )
    resolve: tuple[tuple[str, str], ...] = _setting(
        (), "resolve", "pin names to addresses like curl --resolve: {'name[:port]': 'addr'}"
    )

    # Real sites (issue 11): docs/sessions.md.
    cookies: bool = _setting(True, "bool", "keep a cookie jar per spider, saved between runs")

    db_retry: float = _setting(
        60.0, "duration", "keep reconnecting to a lost database server this long, then exit 3"
    )
    # Several nodes on one PostgreSQL run (issue 10, docs/distributed.md).
    lease_ttl: float = _setting(
        30.0, "duration", "seconds a node's host lease lives without renewal (PostgreSQL)"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise SettingsError(f"setting {f.name} must not be negative: {value!r}")
        if self.per_host < 1:
            raise SettingsError("setting per_host must be at least 1")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise SettingsError("setting max_error_rate must be between 0 and 1")
        if self.max_drop is not None and not 0 <= self.max_drop <= 1:
            raise SettingsError("setting max_drop must be between 0 and 1")
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n\0"):
            raise SettingsError("setting user_agent must be one non-empty line")
        if any(c in self.contact for c in "\r\n\0()"):
            raise SettingsError("setting contact must be one line without parentheses")

    @property
    def agent(self) -> str:
        """The User-Agent sent: ``user_agent``, with ``contact`` folded into the default one."""
        if self.contact and self.user_agent == DEFAULT_USER_AGENT:
            return f"{DEFAULT_USER_AGENT} (+{self.contact})"
        return self.user_agent

    @property
    def worker_count(self) -> int:
        """`workers`, with 0 meaning the number of CPUs."""
        return self.workers or os.cpu_count() or 1

    def replace(self, **changes: Any) -> Settings:
        return resolve_settings(self, changes)

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, safe to store or show: proxy credentials are redacted."""
        values = self._values()
        values["proxy"] = [redact_proxy_url(url) for url in self.proxy]
        values["resolve"] = dict(self.resolve)
        return values

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str]]:
        """(name, default, meaning) for every setting, for ``--help`` and the docs."""
        return [(f.name, _default(f), f.metadata["doc"]) for f in dataclasses.fields(cls)]


def _default(f: dataclasses.Field[Any]) -> Any:
    factory = f.default_factory
    if callable(factory):
        return factory()
    return f.default


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _convert(name: str, value: object) -> Any:
    f = _FIELDS.get(name)
    if f is None:
        known = ", ".join(sorted(_FIELDS))
        raise SettingsError(f"unknown setting {name!r} (known: {known})")
    try:
        return _KIND_PARSERS[f.metadata["kind"]](value)
    except SettingsError as exc:
        raise SettingsError(f"setting {name}: {exc}") from None


def resolve_settings(base: Settings | None = None, *layers: Mapping[str, object]) -> Settings:
    """Apply each mapping of overrides in turn (later wins) on top of ``base`` or the defaults."""
    values = (base or Settings())._values()
    for layer in layers:
        for name, value in layer.items():
            values[name] = _convert(name, value)
    return Settings(**values)
