"""The console monitor says what a pending lane waits for (issue 16): its unfinished
dependencies by id, its agent held for a missing login, the run's budget or deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from _monitor_trackers import lane, tracker, write
from orchestree.monitor import run_monitor
from orchestree.monitor.waits import pending_waits

HELD = "agent 'gemini' is not logged in (no key); set GEMINI_API_KEY"


def waiting_tracker() -> dict[str, object]:
    return tracker(
        {
            "setup": lane(status="merged"),
            "api": lane(status="running"),
            "schema": lane(status="pending", depends_on=["setup"]),
            "ui": lane(status="pending", depends_on=["setup", "api", "schema"]),
            "gem-a": lane(status="blocked", agent="gemini", error=HELD, held="gemini"),
            "gem-b": lane(status="pending", agent="gemini"),
            "late": lane(status="pending", waiting_for="budget"),
            "<b>odd</b>": lane(status="pending", depends_on=["api"]),
        },
        limits={
            "boot_id": "b",
            "boot_s": 1.0,
            "stop": "budget",
            "stop_message": "budget $1.20 of $1.00 spent",
        },
        phase=3,
        status="running",
    )


def test_each_pending_lane_names_what_it_waits_for() -> None:
    assert pending_waits(waiting_tracker()) == {
        "ui": "dependencies api, schema",
        "gem-b": "agent 'gemini' held: not logged in",
        "late": "budget $1.20 of $1.00 spent",
        "<b>odd</b>": "dependencies api",
    }  # "schema" waits for nothing: it starts next


def test_the_console_shows_it_in_the_lane_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    write(tmp_path / ".orchestration" / "tracker.json", waiting_tracker())
    assert run_monitor(tmp_path, web=False, once=True, interval=1, host=None, port=None) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()
            if line.strip().startswith("pending")}  # fmt: skip
    assert "waits for dependencies api, schema" in rows["ui"]
    assert "waits for agent 'gemini' held: not logged in" in rows["gem-b"]
    assert "waits for budget $1.20 of $1.00 spent" in rows["late"]
    assert "waits for" not in rows["schema"]
