from __future__ import annotations

import copy
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _monitor_trackers import agent, big_tracker, lane, tracker
from orchestree.monitor.fields import fmt_duration, progress_text
from orchestree.monitor.snapshot import LANE_STATUSES, Memo, build_snapshot
from orchestree.monitor.views import Snapshot
from orchestree.procs import Identity

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T_MINUS_10M = "2026-01-01T11:50:00.000Z"
T_MINUS_2H = "2026-01-01T10:00:00.000Z"
MY_PID, MY_START, MY_TICKS, BOOT = 4242, 1_700_000_000.25, 987_654, "boot-a"
ME = Identity(MY_PID, MY_TICKS, BOOT)
MINE = {"pid": MY_PID, "pid_ticks": MY_TICKS, "boot_id": BOOT}


def processes(table: dict[int, Identity]) -> Any:
    return table.get


def snap(data: dict[str, Any], table: dict[int, Identity] | None = None, **kw: Any) -> Snapshot:
    return build_snapshot(data, now=NOW, process_identity=processes(table or {}), **kw)


def running(lane_id: str = "work", **agent_fields: Any) -> dict[str, Any]:
    """A tracker with one running lane whose agent has `agent_fields`."""
    return tracker(
        {lane_id: lane(status="running", attempts=1, started_at=T_MINUS_10M)},
        {f"agent-{lane_id}": agent(lane_id, status="running", **agent_fields)},
        phase=3,
        status="running",
    )


def kinds(s: Snapshot) -> list[str]:
    return [w.kind for w in s.warnings]


def test_a_fresh_tracker_is_phase_init_with_nothing_to_report() -> None:
    s = snap(tracker())
    assert (s.phase, s.phase_name, s.phase_progress) == (0, "initialised", 1.0)
    assert s.completion == 0.0
    assert s.statistics.total == 0
    assert set(s.statistics.by_status) == set(LANE_STATUSES)
    assert s.lanes == []
    assert s.agents == []
    assert s.warnings == []
    assert s.updated_ago_s == 0.0


def test_every_lane_status_is_counted_and_completion_counts_settled_lanes() -> None:
    lanes = {f"l{i}": lane(status=status) for i, status in enumerate(LANE_STATUSES)}
    s = snap(tracker(lanes, phase=3, status="running"))
    assert s.statistics.by_status == dict.fromkeys(LANE_STATUSES, 1)
    assert s.statistics.total == 9
    # Everything but pending and running has stopped running.
    assert s.completion == pytest.approx(7 / 9)
    assert (s.statistics.merged, s.statistics.conflicts, s.statistics.failed) == (1, 1, 1)


def test_agents_carry_the_seed_symbols() -> None:
    agents = {
        f"agent-{st_}": agent(st_, status=st_)
        for st_ in ("created", "running", "completed", "failed")
    }
    s = snap(tracker({}, agents))
    assert {a.status: a.symbol for a in s.agents} == {
        "created": "○",
        "running": "→",
        "completed": "✓",
        "failed": "✗",
    }
    assert s.statistics.agents_by_status == {
        "created": 1,
        "running": 1,
        "completed": 1,
        "failed": 1,
    }


def test_a_running_lane_whose_process_lives_raises_no_warning() -> None:
    s = snap(running(**MINE), {MY_PID: ME})
    assert s.warnings == []
    assert s.lanes[0].duration_s == 600.0


def test_a_running_lane_whose_process_is_gone_is_reported() -> None:
    s = snap(running(**MINE), {})
    assert kinds(s) == ["dead_pid"]
    assert "4242 is gone" in s.warnings[0].message
    assert s.warnings[0].lane == "work"


def test_a_running_lane_whose_pid_was_reused_is_reported() -> None:
    s = snap(running(**MINE), {MY_PID: Identity(MY_PID, MY_TICKS + 360_000, BOOT)})
    assert kinds(s) == ["pid_reused"]
    assert "another process" in s.warnings[0].message


def test_the_same_pid_and_ticks_after_a_reboot_is_another_process() -> None:
    s = snap(running(**MINE), {MY_PID: Identity(MY_PID, MY_TICKS, "boot-b")})
    assert kinds(s) == ["pid_reused"]


def test_a_pid_on_another_host_is_not_judged_here() -> None:
    s = snap(running(**MINE, host="worker-7"), {}, this_host="laptop")
    assert s.warnings == []
    assert s.lanes[0].host == "worker-7"


def test_a_running_lane_without_a_pid_yet_is_not_a_warning() -> None:
    assert snap(running(), {}).warnings == []


def test_a_wall_clock_start_time_of_the_released_version_is_never_judged_a_reuse() -> None:
    # A clock step moves such a time by seconds or hours: it cannot tell a reused pid.
    s = snap(running(pid=MY_PID, pid_started=MY_START), {MY_PID: ME})
    assert s.warnings == []
    assert kinds(snap(running(pid=MY_PID, pid_started=MY_START), {})) == ["dead_pid"]


def test_lanes_over_their_timeout_are_reported() -> None:
    data = tracker(
        {
            "slow": lane(status="running", started_at=T_MINUS_2H, timeout_s=3600),
            "fine": lane(status="running", started_at=T_MINUS_10M, timeout_s=3600),
            "default": lane(status="running", started_at=T_MINUS_10M),
        }
    )
    s = snap(data, default_timeout_s=300)
    assert sorted((w.kind, w.lane) for w in s.warnings) == [
        ("timeout", "default"),
        ("timeout", "slow"),
    ]
    slow = next(w for w in s.warnings if w.lane == "slow")
    assert slow.message == "lane slow has run 2h00m, over its timeout of 1h00m"


def test_conflicts_name_their_files() -> None:
    data = tracker(
        {
            "c": lane(
                status="conflict", merge={"status": "conflict", "conflicts": ["a.py", "b/c.py"]}
            )
        }
    )
    s = snap(data)
    assert kinds(s) == ["conflict"]
    assert s.warnings[0].message == "lane c conflicts with the base in: a.py, b/c.py"
    assert s.lanes[0].conflicts == ["a.py", "b/c.py"]


def test_failures_name_their_log() -> None:
    data = tracker(
        {"f": lane(status="failed", error="exit code 2")},
        {"agent-f": agent("f", status="failed", exit_code=2)},
    )
    s = snap(data)
    assert kinds(s) == ["failed"]
    assert s.warnings[0].message == (
        "lane f failed: exit code 2; log: .orchestration/logs/agent-f.log"
    )
    assert s.agents[0].exit_code == 2


def test_a_failure_without_an_agent_still_points_at_the_log() -> None:
    s = snap(tracker({"f": lane(status="failed")}))
    assert s.warnings[0].message == "lane f failed; log: .orchestration/logs/agent-f.log"


def test_blocked_lanes_say_why() -> None:
    data = tracker(
        {
            "a": lane(status="failed"),
            "b": lane(status="blocked", depends_on=["a"], error="dependency a failed"),
            "c": lane(status="blocked"),
        }
    )
    messages = {w.lane: w.message for w in snap(data).warnings if w.kind == "blocked"}
    assert messages == {
        "b": "lane b is blocked: dependency a failed",
        "c": "lane c is blocked: a dependency did not succeed",
    }


def test_lanes_that_changed_nothing_are_reported() -> None:
    data = tracker({"n": lane(status="completed", no_changes=True), "m": lane(status="completed")})
    s = snap(data)
    assert kinds(s) == ["no_changes"]
    assert s.warnings[0].message == "lane n finished without changing any file"


def test_failed_verification_is_reported() -> None:
    s = snap(tracker({"v": lane(status="verify_failed", error="pytest failed")}))
    assert kinds(s) == ["verify_failed"]
    assert "pytest failed" in s.warnings[0].message


@pytest.mark.parametrize(
    ("phase", "statuses", "expected"),
    [
        (1, {"p1": ("probe", "completed"), "p2": ("probe", "running")}, 0.5),
        (2, {"p1": ("probe", "merged")}, 0.0),
        (2, {"p1": ("probe", "merged"), "w": ("lane", "pending")}, 1.0),
        (3, {"p1": ("probe", "merged"), "a": ("lane", "failed"), "b": ("lane", "running")}, 0.5),
        (4, {"a": ("lane", "merged"), "b": ("lane", "completed"), "c": ("lane", "failed")}, 0.5),
    ],
)
def test_phase_progress_follows_the_phase(
    phase: int, statuses: dict[str, tuple[str, str]], expected: float
) -> None:
    lanes = {k: lane(kind=kind, status=status) for k, (kind, status) in statuses.items()}
    s = snap(tracker(lanes, phase=phase, status="running"))
    assert s.phase_progress == pytest.approx(expected)


def test_a_completed_run_is_complete_whatever_the_phase() -> None:
    s = snap(tracker({"a": lane(status="merged")}, phase=4, status="completed"))
    assert (s.phase_name, s.phase_progress, s.completion) == ("merge", 1.0, 1.0)


def test_durations_cost_and_running_time() -> None:
    data = tracker(
        {
            "done": lane(
                status="merged",
                started_at=T_MINUS_2H,
                finished_at="2026-01-01T10:30:00.000Z",
                cost_usd=1.25,
                attempts=2,
                max_attempts=3,
                host="box",
            ),
            "busy": lane(status="running", started_at=T_MINUS_10M, cost_usd=0.5),
            "todo": lane(status="pending"),
        }
    )
    s = snap(data)
    lanes = {lv.id: lv for lv in s.lanes}
    assert lanes["done"].duration_s == 1800.0
    assert lanes["busy"].duration_s == 600.0
    assert lanes["todo"].duration_s is None
    assert (lanes["done"].attempts, lanes["done"].max_attempts, lanes["done"].host) == (2, 3, "box")
    assert s.statistics.cost_usd == pytest.approx(1.75)
    assert s.statistics.agent_time_s == 2400.0
    # From the first start to now, since a lane still runs.
    assert s.statistics.elapsed_s == 7200.0


def test_running_time_stops_at_the_last_finish_when_nothing_runs() -> None:
    data = tracker({"a": lane(status="completed", started_at=T_MINUS_2H, finished_at=T_MINUS_10M)})
    assert snap(data).statistics.elapsed_s == 6600.0


def test_lanes_are_listed_by_what_needs_a_look_first() -> None:
    lanes = {
        "m": lane(status="merged"),
        "p-low": lane(status="pending", priority="low"),
        "p-high": lane(status="pending", priority="high"),
        "f": lane(status="failed"),
        "r": lane(status="running"),
    }
    assert [lv.id for lv in snap(tracker(lanes)).lanes] == ["r", "f", "p-high", "p-low", "m"]


def test_progress_is_the_agents_free_text_made_one_short_line() -> None:
    assert progress_text(None) == ""
    assert progress_text("50%  done\nnow tests") == "50% done now tests"
    assert progress_text({"done": 3, "of": 4}) == '{"done": 3, "of": 4}'
    long = progress_text("x" * 500)
    assert len(long) == 200
    assert long.endswith("…")


def test_names_default_to_ids_and_text_is_kept_verbatim() -> None:
    evil = "<img src=x onerror=alert(1)>"
    s = snap(tracker({"a": lane(), "b": lane(name=evil, progress=evil)}))
    lanes = {lv.id: lv for lv in s.lanes}
    assert lanes["a"].name == "a"
    assert lanes["b"].name == evil
    assert lanes["b"].progress == evil


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (65, "1m05s"), (3600, "1h00m"), (90061, "25h01m")],
)
def test_durations_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_a_memo_only_saves_work_and_never_changes_the_result() -> None:
    memo = Memo()
    table = {MY_PID: ME}
    first = big_tracker(60, running_pid=MY_PID)
    for item in first["agents"].values():
        item.update(pid_ticks=MY_TICKS, boot_id=BOOT)
    assert snap(first, table, memo=memo) == snap(first, table)
    assert memo.lanes, "finished lanes were kept"
    assert all(view.status != "running" for _, _, view, _ in memo.lanes.values())
    # Same tracker again, the process now gone: running lanes are judged anew.
    assert snap(first, {}, memo=memo) == snap(first, {})
    # A new tracker (as the reader parses one per change) with lanes changed and gone.
    second = copy.deepcopy(first)
    second["lanes"]["lane-0001"]["status"] = "merged"
    second["lanes"]["lane-0002"]["progress"] = "changed"
    del second["lanes"]["lane-0003"]
    assert snap(second, table, memo=memo) == snap(second, table)
    assert "lane-0003" not in memo.lanes


def test_the_snapshot_is_plain_json() -> None:
    data = running(**MINE)
    encoded = json.dumps(asdict(snap(data, {})))
    assert json.loads(encoded)["warnings"][0]["kind"] == "dead_pid"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
lane_like = st.fixed_dictionaries(
    {},
    optional={
        key: json_values | st.sampled_from(["running", "2026-01-01T11:00:00Z", "conflict"])
        for key in (
            "status",
            "started_at",
            "finished_at",
            "merge",
            "progress",
            "timeout_s",
            "no_changes",
            "cost_usd",
            "kind",
            "attempts",
        )
    },
)


@settings(max_examples=150, deadline=None)
@given(
    lanes=st.dictionaries(st.text(max_size=6), lane_like | json_values, max_size=4),
    agents=st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    phase=json_values,
    updated=json_values,
)
def test_any_tracker_an_agent_could_write_still_renders(
    lanes: dict[str, Any], agents: dict[str, Any], phase: Any, updated: Any
) -> None:
    data = {
        "version": "1.0.0",
        "phase": phase,
        "updated_at": updated,
        "lanes": lanes,
        "agents": agents,
    }
    s = snap(data, {})
    assert s.statistics.total == len(lanes)
    assert 0.0 <= s.completion <= 1.0
    assert 0.0 <= s.phase_progress <= 1.0
    json.dumps(asdict(s))
