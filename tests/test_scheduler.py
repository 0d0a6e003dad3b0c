"""The scheduler's pure decisions: examples, then properties over random DAGs."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestree.models import SUCCEEDED as DONE
from orchestree.models import UNSUCCESSFUL as DEAD
from orchestree.models import Lane
from orchestree.scheduler import chain_lengths, decide


def _lane(order: int, **fields: Any) -> Lane:
    return Lane(order=order, **fields)


def _lanes(*specs: tuple[str, dict[str, Any]]) -> dict[str, Lane]:
    return {lane_id: _lane(i, **fields) for i, (lane_id, fields) in enumerate(specs)}


def test_ready_lanes_start_by_priority_then_plan_order() -> None:
    lanes = _lanes(
        ("low-1", {"priority": "low"}),
        ("med-1", {"priority": "medium"}),
        ("high-1", {"priority": "high"}),
        ("med-2", {"priority": "medium"}),
        ("high-2", {"priority": "high"}),
    )
    assert decide(lanes, set(), 10).start == ["high-1", "high-2", "med-1", "med-2", "low-1"]
    assert decide(lanes, set(), 3).start == ["high-1", "high-2", "med-1"]


def test_a_lane_with_a_longer_chain_behind_it_goes_first_among_equals() -> None:
    lanes = _lanes(
        ("leaf", {}),
        ("root", {}),
        ("mid", {"depends_on": ["root"]}),
        ("top", {"depends_on": ["mid"]}),
    )
    assert chain_lengths(lanes) == {"leaf": 1, "root": 3, "mid": 2, "top": 1}
    assert decide(lanes, set(), 1).start == ["root"]


def test_dependents_wait_until_their_dependencies_are_done() -> None:
    lanes = _lanes(("a", {"status": "running"}), ("b", {"depends_on": ["a"]}))
    assert decide(lanes, {"a"}, 4).start == []
    lanes["a"].status = "completed"
    assert decide(lanes, set(), 4).start == ["b"]


def test_dependents_of_a_dead_lane_are_blocked_naming_it() -> None:
    for dead in sorted(DEAD):
        lanes = _lanes(("a", {"status": dead}), ("b", {"depends_on": ["a"]}), ("c", {}))
        decision = decide(lanes, set(), 4)
        assert decision.block == {"b": f"dependency 'a' {dead}"}
        assert decision.start == ["c"]


def test_max_parallel_counts_running_lanes() -> None:
    lanes = _lanes(("a", {"status": "running"}), ("b", {}), ("c", {}), ("d", {}))
    assert decide(lanes, {"a"}, 2).start == ["b"]
    assert decide(lanes, {"a"}, 1).start == []


def test_a_lane_that_is_not_parallel_runs_alone() -> None:
    lanes = _lanes(("solo", {"parallel": False, "priority": "high"}), ("x", {}), ("y", {}))
    # It waits for the running lane to finish, and holds the queue meanwhile.
    lanes["x"].status = "running"
    assert decide(lanes, {"x"}, 4).start == []
    lanes["x"].status = "completed"
    assert decide(lanes, set(), 4).start == ["solo"]
    lanes["solo"].status = "running"
    assert decide(lanes, {"solo"}, 4).start == []


def test_selected_limits_what_starts_but_not_what_is_blocked() -> None:
    lanes = _lanes(("a", {"status": "failed"}), ("b", {"depends_on": ["a"]}), ("c", {}), ("d", {}))
    decision = decide(lanes, set(), 4, selected={"d"})
    assert decision.start == ["d"]
    assert decision.block == {"b": "dependency 'a' failed"}


STATUSES = ["pending", "running", "completed", "failed", "cancelled", "blocked", "merged"]


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[dict[str, Lane], set[str], int]:
    """A random DAG of lanes in random states, the lanes running, and a limit."""
    n = draw(st.integers(min_value=1, max_value=12))
    lanes: dict[str, Lane] = {}
    for i in range(n):
        deps = draw(st.lists(st.sampled_from(list(lanes)), unique=True)) if lanes else []
        lanes[f"l{i}"] = _lane(
            i,
            status=draw(st.sampled_from(STATUSES)),
            depends_on=deps,
            priority=draw(st.sampled_from(["high", "medium", "low"])),
            parallel=draw(st.sampled_from([True, True, True, False])),
        )
    running = {k for k, lane in lanes.items() if lane.status == "running"}
    max_parallel = draw(st.integers(min_value=1, max_value=6))
    return lanes, running, max_parallel


@settings(max_examples=400, deadline=None)
@given(snapshots())
def test_decide_properties(snapshot: tuple[dict[str, Lane], set[str], int]) -> None:
    lanes, running, max_parallel = snapshot
    decision = decide(lanes, running, max_parallel)
    start = decision.start
    assert len(start) == len(set(start))
    for lane_id in start:
        lane = lanes[lane_id]
        assert lane.status == "pending"
        assert lane_id not in running
        # Never before its dependencies are done.
        assert all(lanes[d].status in DONE for d in lane.depends_on)
        assert lane_id not in decision.block
    # Never more than max_parallel running at once (when we were within it).
    if len(running) <= max_parallel:
        assert len(running) + len(start) <= max_parallel
    else:
        assert start == []
    # A lane that is not parallel never starts beside another, nor does anything
    # start beside a running one.
    if any(not lanes[lane_id].parallel for lane_id in start):
        assert len(start) == 1
        assert not running
    if any(not lanes[r].parallel for r in running):
        assert start == []
    # Blocked exactly when a pending lane has a dead dependency.
    expected_block = {
        k
        for k, lane in lanes.items()
        if lane.status == "pending"
        and k not in running
        and any(lanes[d].status in DEAD for d in lane.depends_on)
    }
    assert set(decision.block) == expected_block
    # Work is never left idle: with only parallel lanes, as many start as fit.
    ready = [
        k
        for k, lane in lanes.items()
        if lane.status == "pending"
        and k not in running
        and all(lanes[d].status in DONE for d in lane.depends_on)
    ]
    if all(lanes[k].parallel for k in [*ready, *running]):
        assert len(start) == min(len(ready), max(0, max_parallel - len(running)))
