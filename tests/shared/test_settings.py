"""crawler.settings: durations, sizes, booleans, layering, unknown names and bad values."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from crawler import Settings, __version__
from crawler.errors import SettingsError
from crawler.settings import (
    DEFAULT_USER_AGENT,
    parse_bool,
    parse_duration,
    parse_size,
    resolve_settings,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0), (1.5, 1.5), ("90", 90.0), ("30s", 30.0), ("15m", 900.0), ("2h", 7200.0),
        ("1d", 86400.0), ("1w", 604800.0), ("1h30m", 5400.0), (" 2H ", 7200.0), ("0.5s", 0.5),
        (".5m", 30.0),
    ],
)  # fmt: skip
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", " ", "soon", "-1", "-5m", "5x", "1h x", True, None, -1, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(SettingsError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 0), (10, 10), ("512", 512), ("512k", 512 * 1024), ("10MB", 10 * 1024**2),
     ("1g", 1024**3), ("1.5kb", 1536), (2.0, 2)],
)  # fmt: skip
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "big", "10TB", "-1", -1, -1.0, True, None])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(SettingsError):
        parse_size(value)


@pytest.mark.parametrize(
    ("value", "result"),
    [("true", True), ("YES", True), ("on", True), ("1", True), (1, True), (True, True),
     ("false", False), ("no", False), ("off", False), ("0", False), (0, False)],
)  # fmt: skip
def test_parse_bool(value: object, result: bool) -> None:
    assert parse_bool(value) is result


@pytest.mark.parametrize("value", ["maybe", "", 2, None, 1.0])
def test_parse_bool_rejects(value: object) -> None:
    with pytest.raises(SettingsError):
        parse_bool(value)


def test_defaults_match_the_documented_contract() -> None:
    s = Settings()
    assert (s.workers, s.per_host, s.delay, s.timeout, s.retries) == (0, 2, 0.0, 30.0, 3)
    assert (s.max_pages, s.max_items, s.max_depth, s.max_runtime) == (0, 0, 0, 0.0)
    assert (s.max_redirects, s.max_body_size, s.max_url_length) == (20, 10 * 1024**2, 2083)
    assert (s.max_links_per_page, s.store_body, s.store_links) == (10000, True, False)
    assert (s.robots, s.crawl_delay_max, s.sitemaps) == (True, 30.0, True)
    assert (s.recrawl_after, s.max_error_rate, s.min_items) == (None, None, 0)
    assert s.user_agent == DEFAULT_USER_AGENT and __version__ in s.user_agent
    assert s.worker_count == (os.cpu_count() or 1)
    assert Settings(workers=3).worker_count == 3


def test_strings_convert_by_kind() -> None:
    s = resolve_settings(
        None,
        {
            "per_host": "4", "delay": "2s", "timeout": "1m",
            "max_body_size": "1MB", "store_links": "yes", "max_error_rate": "0.1",
            "recrawl_after": "1d", "user_agent": "bot/1 (+http://127.0.0.1/)",
        },
    )  # fmt: skip
    assert (s.per_host, s.delay, s.timeout, s.max_body_size) == (4, 2.0, 60.0, 1024**2)
    assert (s.store_links, s.max_error_rate, s.recrawl_after) == (True, 0.1, 86400.0)
    assert s.user_agent == "bot/1 (+http://127.0.0.1/)"


@pytest.mark.parametrize(
    ("name", "off"),
    [("recrawl_after", "never"), ("recrawl_after", "off"), ("max_error_rate", "none")],
)
def test_optional_settings_can_be_turned_off(name: str, off: str) -> None:
    on = resolve_settings(None, {"recrawl_after": "1h", "max_error_rate": 0.5})
    assert getattr(resolve_settings(on, {name: off}), name) is None


def test_layers_later_wins_and_base_is_kept() -> None:
    base = Settings(per_host=5)
    s = resolve_settings(base, {"per_host": 3, "delay": 1}, {"per_host": "4"})
    assert (s.per_host, s.delay) == (4, 1.0)
    assert base.per_host == 5
    assert resolve_settings(base).per_host == 5
    assert s.replace(delay="3s").delay == 3.0 and s.delay == 1.0


def test_unknown_setting_names_the_known_ones() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting 'per_hots'.*per_host"):
        resolve_settings(None, {"per_hots": 1})


@pytest.mark.parametrize(
    "layer",
    [
        {"per_host": "two"}, {"per_host": 0}, {"per_host": 1.5}, {"workers": -1},
        {"retries": True}, {"delay": "-1s"}, {"timeout": "x"}, {"max_error_rate": 1.5},
        {"max_error_rate": "lots"}, {"user_agent": ""}, {"user_agent": "a\r\nX-Evil: 1"},
        {"user_agent": 5}, {"store_body": "perhaps"}, {"max_body_size": "huge"},
    ],
)  # fmt: skip
def test_bad_values_raise_settings_error(layer: dict[str, Any]) -> None:
    with pytest.raises(SettingsError):
        resolve_settings(None, layer)


def test_settings_error_is_a_value_error_and_names_the_setting() -> None:
    with pytest.raises(ValueError, match="setting delay"):
        resolve_settings(None, {"delay": "soon"})


def test_settings_are_frozen_and_described() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.per_host = 3  # type: ignore[misc]
    described = Settings.describe()
    names = [name for name, _, _ in described]
    assert names == list(s.as_dict())
    assert all(doc for _, _, doc in described)
    assert ("per_host", 2, "connections per host (the pool's maxsize, block=True)") in described
