"""crawler stats: one line per host with a host_settings rule or held down by autothrottle."""

from __future__ import annotations

from crawler.store.history import format_run


def test_format_run_shows_a_line_per_host() -> None:
    run = {
        "id": 3,
        "spider": "news",
        "exit_code": 0,
        "finish_reason": "finished",
        "started_at": 1.0,
        "finished_at": 2.0,
        "pid": None,
        "stats": {
            "pages": 4,
            "hosts": {
                "a.example.com": {"per_host": 4, "delay": 1.0, "limit": 3, "max_in_flight": 4}
            },
        },
    }
    text = format_run(run)
    assert (
        "host        a.example.com: per_host 4, delay 1.0s, autothrottle 3, at most 4 in flight"
        in text.splitlines()
    ), text
    plain = format_run({**run, "stats": {"pages": 4}}).splitlines()
    assert not [line for line in plain if line.startswith("host ")], plain
