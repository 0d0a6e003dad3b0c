"""Validated types, lane ids, the dependency graph and the lane state machine."""

from __future__ import annotations

import re
import subprocess
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestree.errors import UserError
from orchestree.models import (
    LANE_TRANSITIONS,
    Lane,
    LaneInput,
    LaneStatus,
    Tracker,
    check_graph,
    check_lane_id,
    describe_validation_error,
)

GOOD_IDS = ["a", "0", "db-projection", "probe-v2", "a.b", "a_b", "x.lock1", "a.lock.b", "a" * 63]
BAD_IDS = {
    "": "is empty",
    "-a": "starts with '-'",
    ".a": "may hold only",
    "_a": "may hold only",
    "a/b": "contains a slash",
    "a\\b": "contains a slash",
    "a..b": "contains '..'",
    "..": "contains '..'",
    "a.lock": "ends in '.lock'",
    "a.": "ends in '.'",
    "A": "may hold only",
    "a b": "may hold only",
    "a\nb": "may hold only",
    "é": "may hold only",
    "a" * 64: "is 64 characters long",
}


@pytest.mark.parametrize("lane_id", GOOD_IDS)
def test_good_lane_ids_pass(lane_id: str) -> None:
    assert check_lane_id(lane_id) == lane_id


@pytest.mark.parametrize(("lane_id", "problem"), BAD_IDS.items(), ids=list(map(repr, BAD_IDS)))
def test_bad_lane_ids_are_named(lane_id: str, problem: str) -> None:
    with pytest.raises(UserError) as caught:
        check_lane_id(lane_id)
    message = str(caught.value)
    assert message.startswith(f"lane id {lane_id!r} {problem}")
    assert "\n" not in message.replace(repr(lane_id), "")


def git_accepts_branch(name: str) -> bool:
    proc = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    return proc.returncode == 0


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,70}", fullmatch=True))
def test_every_accepted_id_makes_a_branch_git_accepts(lane_id: str) -> None:
    try:
        check_lane_id(lane_id)
    except UserError:
        return
    assert len(lane_id) <= 63
    assert git_accepts_branch(f"lane-{lane_id}")


@settings(max_examples=200)
@given(st.text(max_size=70))
def test_an_accepted_id_is_one_safe_path_component(lane_id: str) -> None:
    try:
        check_lane_id(lane_id)
    except UserError:
        return
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", lane_id)
    assert ".." not in lane_id
    assert not lane_id.endswith((".lock", "."))


def test_the_state_machine_covers_every_status_and_the_designed_paths() -> None:
    statuses = set(typing.get_args(LaneStatus))
    assert set(LANE_TRANSITIONS) == statuses
    for targets in LANE_TRANSITIONS.values():
        assert targets <= statuses
    designed = [
        ("pending", "running"),
        ("running", "completed"),
        ("running", "failed"),
        ("running", "cancelled"),
        ("pending", "blocked"),
        ("completed", "merged"),
        ("completed", "conflict"),
        ("completed", "verify_failed"),
    ]
    for before, after in designed:
        assert after in LANE_TRANSITIONS[before]
    assert "completed" not in LANE_TRANSITIONS["pending"]
    assert "merged" not in LANE_TRANSITIONS["running"]
    assert LANE_TRANSITIONS["merged"] == frozenset()


def test_lane_input_accepts_the_seed_lane_json() -> None:
    seed = {
        "name": "Custom Analysis",
        "tasks": ["Analyze performance", "Generate report"],
        "parallel": True,
        "priority": "high",
    }
    lane = LaneInput.model_validate(seed)
    assert (lane.name, lane.tasks, lane.parallel, lane.priority) == (
        "Custom Analysis",
        ["Analyze performance", "Generate report"],
        True,
        "high",
    )
    assert (lane.depends_on, lane.agent, lane.kind) == ([], None, "lane")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"depend_on": ["x"]}, "unknown field 'depend_on'"),
        ({"tasks": "x"}, "field 'tasks' input should be a valid list"),
        ({"tasks": [None]}, "field 'tasks.0'"),
        ({"priority": "urgent"}, "field 'priority'"),
        ({"timeout_s": 0}, "field 'timeout_s' input should be greater than 0"),
        ({"max_attempts": 0}, "field 'max_attempts'"),
        ({"budget_usd": -1}, "field 'budget_usd'"),
        ({"kind": "job"}, "field 'kind'"),
        ({"depends_on": ["a", "a"]}, "field 'depends_on' value error, lists a dependency twice"),
    ],
)
def test_lane_input_problems_are_one_line_naming_the_field(
    raw: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        LaneInput.model_validate(raw)
    message = describe_validation_error(caught.value, "lane 'x'")
    assert message.startswith("lane 'x': ")
    assert needle in message
    assert "\n" not in message


def test_a_dependency_with_a_bad_id_names_the_id() -> None:
    with pytest.raises(UserError, match=r"lane id 'up\.\.x' contains '\.\.'"):
        LaneInput.model_validate({"depends_on": ["up..x"]})


def test_lane_progress_is_text_and_data_is_free_form() -> None:
    lane = Lane.model_validate({"progress": "50%", "data": {"any": ["thing", 1, None]}})
    assert lane.progress == "50%"
    assert lane.data == {"any": ["thing", 1, None]}
    with pytest.raises(ValidationError, match="progress"):
        Lane.model_validate({"progress": {"pct": 50}})


@pytest.mark.parametrize(
    ("deps", "needle"),
    [
        ({"a": ["b"]}, "lane 'a' depends on 'b', which is not a lane"),
        ({"a": ["a"]}, "lane 'a' depends on itself"),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, "lane dependencies form a cycle ("),
    ],
)
def test_check_graph_refuses_missing_self_and_cycles(
    deps: dict[str, list[str]], needle: str
) -> None:
    with pytest.raises(UserError, match=re.escape(needle)):
        check_graph(deps)


def test_check_graph_names_the_cycle() -> None:
    with pytest.raises(UserError) as caught:
        check_graph({"a": ["b"], "b": ["a"], "c": []})
    cycle = str(caught.value).split("(")[1].split(")")[0].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b"}


def test_check_graph_accepts_a_dag() -> None:
    check_graph({"a": [], "b": ["a"], "c": ["a", "b"], "d": []})


def test_a_new_tracker_has_the_seed_shape() -> None:
    data = Tracker(repo="/r", base_branch="main", base_commit="0" * 40).model_dump(mode="json")
    for key in ("version", "phase", "status", "agents", "lanes"):
        assert key in data
    assert (data["version"], data["phase"], data["status"]) == ("1.0.0", 0, "initialised")


def test_tracker_refuses_a_bad_lane_id_and_an_unknown_key() -> None:
    base = {"repo": "/r", "base_branch": "main", "base_commit": "0" * 40}
    with pytest.raises(UserError, match="lane id 'Bad'"):
        Tracker.model_validate({**base, "lanes": {"Bad": {}}})
    with pytest.raises(ValidationError) as caught:
        Tracker.model_validate({**base, "phases": 1})
    assert describe_validation_error(caught.value, "tracker") == "tracker: unknown field 'phases'"
