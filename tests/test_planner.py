from __future__ import annotations

import graphlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _probe_repos import BUGGY, make_repo, run_probe
from orchestree.errors import UserError
from orchestree.models import Gap, Priority, ProbeResult
from orchestree.planner import (
    GroupBy,
    dependencies,
    load_results,
    make_plan,
    overlaps,
    read_plan,
    write_plan,
)


def result(
    probe: str, *gaps: tuple[str, Priority, list[str]], agent: str | None = None
) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        summary="",
        gaps=[
            Gap(id=gid, title=f"fix {gid}", priority=prio, paths=paths, agent=agent)
            for gid, prio, paths in gaps
        ],
    )


@pytest.fixture(scope="module")
def probed_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The buggy repository after all four built-in probes ran in it, plus a broken probe."""
    repo = make_repo(tmp_path_factory.mktemp("planner") / "repo", BUGGY)
    for probe in ("inventory", "lint", "markers", "tests"):
        proc = run_probe(repo, probe)
        assert proc.returncode == 0, proc.stderr
    broken = repo / "docs/_generated/security"
    broken.mkdir()
    (broken / "state_probe.json").write_text('{"probe": "security", "summary": "oops"')
    return repo


def test_plan_from_the_builtin_probes_on_a_buggy_repository(probed_repo: Path) -> None:
    results, problems = load_results(probed_repo / "docs/_generated")
    assert [r.probe for r in results] == ["inventory", "lint", "markers", "tests"]
    assert len(problems) == 1
    assert "security/state_probe.json: not valid JSON" in problems[0]
    plan = make_plan(results, default_agent="claude", reserved=[r.probe for r in results])
    assert plan.sources == ["inventory", "lint", "markers", "tests"]
    lanes = {
        lane_id: (lane.priority, lane.depends_on, lane.agent)
        for lane_id, lane in plan.lanes.items()
    }
    assert lanes == {
        "lint-src-util.py": ("medium", [], "claude"),
        "markers-src-app.py": ("low", [], "claude"),
        # Both touch src/util.py: same priority, so plan order decides.
        "markers-src-util.py": ("medium", ["lint-src-util.py"], "claude"),
        "tests-tests-test_app.py": ("high", [], "claude"),
    }
    assert plan.lanes["tests-tests-test_app.py"].tasks[0] == (
        "Make tests/test_app.py::test_add_negative pass"
    )


def test_group_by_file_and_by_probe(probed_repo: Path) -> None:
    results, _ = load_results(probed_repo / "docs/_generated")
    by_file = make_plan(results, default_agent="claude", group_by="file")
    assert {k: v.priority for k, v in by_file.lanes.items()} == {
        "fix-src-util.py": "medium",
        "fix-src-app.py": "low",
        "fix-tests-test_app.py": "high",
    }
    util = by_file.lanes["fix-src-util.py"]
    assert util.name == "2 gaps in src/util.py"
    assert any("F401" in t for t in util.tasks)
    assert any("FIXME" in t for t in util.tasks)
    by_probe = make_plan(results, default_agent="claude", group_by="probe")
    assert list(by_probe.lanes) == ["lint-fixes", "markers-fixes", "tests-fixes"]
    assert by_probe.lanes["markers-fixes"].depends_on == ["lint-fixes"]
    assert by_probe.lanes["tests-fixes"].depends_on == []


def test_priority_orders_overlapping_lanes_and_agents_carry_over() -> None:
    results = [
        result("a", ("docs", "low", ["docs"])),
        result("b", ("readme", "high", ["docs/readme.md"]), agent="codex"),
        result("c", ("whole", "medium", ["."]), ("alone", "low", [])),
    ]
    plan = make_plan(results, default_agent="claude")
    deps = {k: v.depends_on for k, v in plan.lanes.items()}
    # readme (high) → whole (medium, everything) → docs (low); docs→readme is implied.
    assert deps == {"docs": ["whole"], "readme": [], "whole": ["readme"], "alone": []}
    assert plan.lanes["readme"].agent == "codex"
    assert plan.lanes["docs"].agent == "claude"


def test_lane_ids_avoid_reserved_and_duplicate_ids() -> None:
    results = [result("p", ("lint", "low", ["a"])), result("q", ("lint", "low", ["b"]))]
    plan = make_plan(results, default_agent="claude", reserved=["lint"])
    assert list(plan.lanes) == ["lint-2", "lint-3"]


def test_plan_round_trips_through_its_file(tmp_path: Path) -> None:
    results = [result("p", ("x", "high", ["a"]), ("y", "low", ["a/b"]))]
    plan = make_plan(results, default_agent="shell", created_at="2025-01-01T00:00:00Z")
    path = tmp_path / "docs/_generated/execution_plan.json"
    write_plan(path, plan)
    assert read_plan(path) == plan
    raw = json.loads(path.read_text())
    assert list(raw) == ["version", "created_at", "sources", "lanes"]
    assert raw["lanes"]["y"]["depends_on"] == ["x"]


def plan_file(tmp_path: Path, lanes: dict[str, object]) -> Path:
    path = tmp_path / "execution_plan.json"
    path.write_text(json.dumps({"version": "1.0.0", "sources": [], "lanes": lanes}))
    return path


@pytest.mark.parametrize(
    ("lanes", "message"),
    [
        ({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}, "form a cycle"),
        ({"a": {"depends_on": ["ghost"]}}, "depends on 'ghost', which is not a lane"),
        ({"A B": {}}, "lane id 'A B'"),
        ({"a": {"priority": "asap"}}, "field 'lanes.a.priority'"),
        ({"a": {"colour": "red"}}, "unknown field 'lanes.a.colour'"),
    ],
)
def test_a_bad_hand_edited_plan_is_refused(
    tmp_path: Path, lanes: dict[str, object], message: str
) -> None:
    path = plan_file(tmp_path, lanes)
    with pytest.raises(UserError) as info:
        read_plan(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_or_broken_plan_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no plan there; run `orchestree plan` first"):
        read_plan(tmp_path / "execution_plan.json")
    (tmp_path / "execution_plan.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_plan(tmp_path / "execution_plan.json")


def test_no_results_no_lanes(tmp_path: Path) -> None:
    assert load_results(tmp_path / "absent") == ([], [])
    assert make_plan([], default_agent="claude").lanes == {}


def test_overlaps() -> None:
    assert overlaps("src", "src/a.py")
    assert overlaps("src/a.py", "src/a.py")
    assert overlaps(".", "x")
    assert not overlaps("src", "src2/a.py")
    assert not overlaps("src/a.py", "src/b.py")


# --- properties --------------------------------------------------------------------

PATHS = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3).map(lambda p: "/".join(p) or ".")
LANES = st.lists(
    st.tuples(st.sampled_from(["high", "medium", "low"]), st.lists(PATHS, max_size=3, unique=True)),
    max_size=12,
)


def _reaches(needs: list[list[int]]) -> list[set[int]]:
    """For each lane, every lane it waits for, directly or not."""
    reach: list[set[int]] = [set() for _ in needs]
    order = graphlib.TopologicalSorter({i: set(n) for i, n in enumerate(needs)}).static_order()
    for i in order:
        for j in needs[i]:
            reach[i] |= {j} | reach[j]
    return reach


def _overlap(a: list[str], b: list[str]) -> bool:
    return any(overlaps(x, y) for x in a for y in b)


@given(LANES)
def test_dependencies_are_a_dag_that_orders_every_overlap(
    lanes: list[tuple[Priority, list[str]]],
) -> None:
    needs = dependencies(lanes)
    reach = _reaches(needs)  # static_order raises CycleError unless it is a DAG
    rank = {"high": 0, "medium": 1, "low": 2}
    for i, (prio_i, paths_i) in enumerate(lanes):
        for j, (prio_j, paths_j) in enumerate(lanes):
            if j <= i:
                continue
            if _overlap(paths_i, paths_j):
                assert (i in reach[j]) != (j in reach[i]), "overlapping lanes ordered one way"
                if rank[prio_i] != rank[prio_j]:
                    first, then = (i, j) if rank[prio_i] < rank[prio_j] else (j, i)
                    assert first in reach[then], "the higher priority runs first"
            else:
                assert j not in needs[i], "disjoint lanes not linked"
                assert i not in needs[j], "disjoint lanes not linked"


GAPS = st.lists(
    st.tuples(
        st.sampled_from(["g", "h", "Fix Me"]),
        st.sampled_from(["high", "low"]),
        st.lists(PATHS, max_size=2),
    ),
    max_size=8,
)


@given(st.lists(GAPS, min_size=1, max_size=3), st.sampled_from(["gap", "file", "probe"]))
def test_make_plan_is_always_a_valid_dag(
    groups: list[list[tuple[str, Priority, list[str]]]], group_by: GroupBy
) -> None:
    results = [result(f"p{n}", *gaps) for n, gaps in enumerate(groups)]
    plan = make_plan(results, default_agent="claude", group_by=group_by, reserved=["p0"])
    graphlib.TopologicalSorter({k: v.depends_on for k, v in plan.lanes.items()}).prepare()
    assert "p0" not in plan.lanes
    if group_by == "gap":
        assert len(plan.lanes) == sum(len(r.gaps) for r in results)
        paths = [gap.paths for r in results for gap in r.gaps]
        ids = list(plan.lanes)
        for i, j in ((i, j) for i in range(len(ids)) for j in range(len(ids)) if i != j):
            if ids[j] in plan.lanes[ids[i]].depends_on:
                assert _overlap(paths[i], paths[j])
