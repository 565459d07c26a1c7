"""host_settings: parsed from -s JSON or a mapping, most specific glob wins, applied per host."""

from __future__ import annotations

import pytest

from crawler.engine.politeness import Politeness, PolitenessPolicy
from crawler.errors import SettingsError
from crawler.settings import DEFAULT_USER_AGENT, Settings, host_rules, resolve_settings

RULES = {
    "*.example.com": {"per_host": 4, "delay": 1.0},
    "api.example.com": {"per_host": 1},
    "*.com": {"delay": 2},
    "127.0.0.2:8443": {"per_host": 6},
}


def test_the_most_specific_match_wins() -> None:
    rules = resolve_settings(None, {"host_settings": RULES}).host_settings
    assert host_rules(rules, "api.example.com") == {"per_host": 1}
    assert host_rules(rules, "API.Example.com:8080") == {"per_host": 1}
    assert host_rules(rules, "www.example.com") == {"per_host": 4, "delay": 1.0}
    assert host_rules(rules, "shop.com") == {"delay": 2.0}
    assert host_rules(rules, "example.org") == {}
    assert host_rules(rules, "127.0.0.2:8443") == {"per_host": 6}
    assert host_rules(rules, "127.0.0.2:8080") == {}


def test_command_line_json_converts_like_custom_settings() -> None:
    text = '{"*.example.com": {"per_host": "4", "delay": "1s"}}'
    assert resolve_settings(None, {"host_settings": text}).host_settings == {
        "*.example.com": {"per_host": 4, "delay": 1.0}
    }
    for bad in ('{"a.com": {"speed": 1}}', '{"a.com": {"per_host": 0}}', "[1]", "{nope"):
        with pytest.raises(SettingsError):
            resolve_settings(None, {"host_settings": bad})


def test_each_host_gets_its_rule_and_autothrottle_starts_at_one() -> None:
    p = Politeness(PolitenessPolicy(per_host=2), host_settings=RULES, autothrottle=True)
    assert p.clock("www.example.com").policy.per_host == 4
    assert p.clock("www.example.com").policy.delay == 1.0
    assert p.clock("api.example.com").policy.per_host == 1
    assert p.clock("example.org").policy is p.policy
    assert p.free_slots("example.org", 0.0) == 1  # the controller's first limit
    off = Politeness(PolitenessPolicy(per_host=2), autothrottle=False)
    assert off.free_slots("example.org", 0.0) == 2


def test_a_host_starts_from_what_an_earlier_run_learned() -> None:
    p = Politeness(PolitenessPolicy(per_host=8), autothrottle=True)
    p.learn({"a.test": {"concurrency": 5, "baseline": 0.03, "gap": 0.0}})
    assert p.free_slots("a.test", 0.0) == 5
    assert p.free_slots("b.test", 0.0) == 1


def test_contact_is_folded_into_the_default_user_agent_only() -> None:
    assert Settings().agent == DEFAULT_USER_AGENT
    s = Settings(contact="https://example.org/bot")
    assert s.agent == f"{DEFAULT_USER_AGENT} (+https://example.org/bot)"
    assert Settings(contact="x", user_agent="mine/1").agent == "mine/1"
    with pytest.raises(SettingsError):
        Settings(contact="a\r\nX-Evil: 1")
