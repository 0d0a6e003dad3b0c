"""Batched verify with bisection: the pure queue against a verify oracle, then real git."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanes_helpers import add_lanes, finish_lane, make_repo, sh
from orchestree.cli import main
from orchestree.merge import batch, merger, results
from orchestree.repo import open_repo


class Sim:
    """A merge candidate as a set of lanes: a lane conflicts when it clashes with a lane
    already in the candidate, is skipped when a dependency was not merged, and a verify
    run fails when `breaks` says the candidate as it was after that lane fails."""

    def __init__(
        self,
        deps: dict[str, set[str]],
        clashes: set[frozenset[str]],
        breaks: object,
    ) -> None:
        self.deps, self.clashes, self.breaks = deps, clashes, breaks
        self.merged: list[str] = []  # the candidate, in order
        self.after: dict[str, tuple[str, ...]] = {}  # lane -> the candidate right after it
        self.decided: dict[str, str] = {}  # lane -> its provisional status
        self.final: dict[str, str] = {}
        self.settled: list[str] = []
        self.verified: list[tuple[str, ...]] = []

    def add(self, lane_id: str) -> bool:
        if any(self.final.get(d, self.decided.get(d)) != "merged" for d in self.deps[lane_id]):
            self.decided[lane_id] = "skipped"
            return False
        if any(frozenset({lane_id, m}) in self.clashes for m in self.merged):
            self.decided[lane_id] = "conflict"
            return False
        self.merged.append(lane_id)
        self.after[lane_id] = tuple(self.merged)
        self.decided[lane_id] = "merged"
        return True

    def fails(self, lane_id: str) -> bool:
        self.verified.append(self.after[lane_id])
        assert callable(self.breaks)
        return bool(self.breaks(self.after[lane_id]))

    def drop(self, lane_ids: list[str]) -> None:
        self.merged = [m for m in self.merged if m not in lane_ids]
        for lane_id in lane_ids:
            self.decided.pop(lane_id, None)

    def settle(self, lane_id: str, broken: bool) -> None:
        self.final[lane_id] = "verify_failed" if broken else self.decided[lane_id]
        self.settled.append(lane_id)


@st.composite
def queues(draw: st.DrawFn) -> tuple[list[str], dict[str, set[str]], set[frozenset[str]], set[str]]:
    n = draw(st.integers(min_value=0, max_value=30))
    order = [f"l{i}" for i in range(n)]
    deps = {
        lane: set(draw(st.lists(st.sampled_from(order[:i]), max_size=2))) if i else set()
        for i, lane in enumerate(order)
    }
    pairs = [frozenset({a, b}) for i, a in enumerate(order) for b in order[i + 1 :]]
    clashes = set(draw(st.lists(st.sampled_from(pairs), max_size=6))) if pairs else set()
    bad = set(draw(st.lists(st.sampled_from(order), max_size=5))) if order else set()
    return order, deps, clashes, bad


def decide(order: list[str], size: int, sim: Sim) -> tuple[dict[str, str], int]:
    runs = batch.verify_in_batches(order, size, sim)
    return sim.final, runs


@settings(max_examples=300, deadline=None)
@given(queues(), st.integers(min_value=1, max_value=12))
def test_batches_merge_what_one_at_a_time_merges(
    case: tuple[list[str], dict[str, set[str]], set[frozenset[str]], set[str]], size: int
) -> None:
    order, deps, clashes, bad = case

    def independent(candidate: tuple[str, ...]) -> bool:  # a bad lane breaks any candidate
        return bool(bad & set(candidate))

    one_by_one, _ = decide(order, 1, Sim(deps, clashes, independent))
    sim = Sim(deps, clashes, independent)
    batched, _ = decide(order, size, sim)

    assert batched == one_by_one
    assert sim.settled == order  # every lane decided once, in merge order
    # what is merged was verified together, as one candidate, and passed
    merged = tuple(k for k in order if batched[k] == "merged")
    assert not independent(merged)
    assert not merged or merged in sim.verified


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=16), st.data())
def test_one_breaking_lane_costs_a_bisection(n: int, size: int, data: st.DataObject) -> None:
    order = [f"l{i}" for i in range(n)]
    bad = data.draw(st.sampled_from(order))
    sim = Sim({k: set() for k in order}, set(), lambda c: bad in c)

    final, runs = decide(order, size, sim)

    assert [k for k, v in final.items() if v == "verify_failed"] == [bad]
    assert sum(v == "merged" for v in final.values()) == n - 1
    assert runs <= math.ceil((n - 1) / size) + 1 + math.ceil(math.log2(size))


def test_twenty_four_lanes_one_breaks_within_the_target() -> None:
    order = [f"l{i}" for i in range(24)]
    worst = 0
    for bad in order:
        sim = Sim({k: set() for k in order}, set(), lambda c, bad=bad: bad in c)
        final, runs = decide(order, 8, sim)
        assert sum(v == "merged" for v in final.values()) == 23
        worst = max(worst, runs)
    assert worst <= math.ceil(math.log2(24)) + 2


@settings(max_examples=200, deadline=None)
@given(queues(), st.integers(min_value=1, max_value=12), st.data())
def test_any_oracle_leaves_a_candidate_that_passed(
    case: tuple[list[str], dict[str, set[str]], set[frozenset[str]], set[str]],
    size: int,
    data: st.DataObject,
) -> None:
    """Failures that depend on each other (two lanes break only together): the merged
    set may differ from one at a time, but every lane is decided once and the final
    candidate is one a verify run passed."""
    order, deps, clashes, _ = case
    verdicts: dict[tuple[str, ...], bool] = {}

    def flaky_free(candidate: tuple[str, ...]) -> bool:  # an arbitrary, fixed oracle
        if candidate not in verdicts:
            verdicts[candidate] = data.draw(st.booleans())
        return verdicts[candidate]

    sim = Sim(deps, clashes, flaky_free)
    final, _ = decide(order, size, sim)

    assert sim.settled == order
    merged = tuple(k for k in order if final[k] == "merged")
    if merged:
        assert verdicts[merged] is False


def test_batch_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        batch.verify_in_batches(["a"], 0, Sim({"a": set()}, set(), lambda c: False))


# --- real git, a real verify command -------------------------------------------------


def test_twenty_four_lanes_one_breaks_the_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "verify-runs.log"
    check = f"echo run >> {runs}; sleep 0.2; test ! -e broken.txt || {{ echo broken; exit 1; }}"
    toml = f'[merge]\nverify = "{check}"\n'
    root = make_repo(tmp_path / "repo", {"README.md": "hi\n"}, toml=toml)
    lanes = [f"lane{i:02d}" for i in range(24)]
    add_lanes(root, {k: {} for k in lanes})
    for lane in lanes:
        files = {f"{lane}.txt": f"{lane}\n"}
        if lane == "lane13":
            files["broken.txt"] = "oops\n"
        finish_lane(root, lane, files, worktree=False)
    old = sh(root, "rev-parse", "main")

    assert main(["merge", "--check", "--json", "--repo", str(root)]) == 1
    predicted = json.loads(capsys.readouterr().out)
    check_runs = len(runs.read_text().splitlines())
    assert sh(root, "rev-parse", "main") == old  # --check moved nothing

    code = main(["merge", "--json", "--repo", str(root)])
    report = json.loads(capsys.readouterr().out)

    assert code == 1
    statuses = {lane["id"]: lane["status"] for lane in report["lanes"]}
    assert statuses == {lane: "verify_failed" if lane == "lane13" else "merged" for lane in lanes}
    assert {k["id"]: k["status"] for k in predicted["lanes"]} == statuses
    broken = next(k for k in report["lanes"] if k["id"] == "lane13")
    assert "broken" in broken["verify_tail"]
    assert "exited 1" in broken["verify_tail"]
    assert report["old"] == old
    assert report["new"] == sh(root, "rev-parse", "main")
    assert report["base_branch"] == "main"
    assert report["check"] is False
    assert all(k["reworks"] == 0 and k["conflicts"] == [] for k in report["lanes"])
    merge_runs = len(runs.read_text().splitlines()) - check_runs
    assert merge_runs == report["verify_runs"] <= math.ceil(math.log2(24)) + 2
    assert not (root / "broken.txt").exists()
    assert all((root / f"{lane}.txt").exists() for lane in lanes if lane != "lane13")
    state = open_repo(root).store.read()
    assert state.lanes["lane13"].status == "verify_failed"
    assert sum(lane.status == "merged" for lane in state.lanes.values()) == 23


def test_batch_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path / "repo")
    (root / "orchestree.toml").write_text('[merge]\nbatch = 0\nverify = "true"\n')
    code = main(["merge", "--repo", str(root)])
    err = capsys.readouterr().err
    assert code == 2
    assert "batch" in err
    assert "Traceback" not in err


def test_merge_json_names_a_conflict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path / "repo", {"a.txt": "one\n"})
    add_lanes(root, {"x": {"priority": "high"}, "y": {}})
    finish_lane(root, "x", {"a.txt": "ex\n"})
    finish_lane(root, "y", {"a.txt": "why\n"})

    code = main(["merge", "--check", "--json", "--repo", str(root)])
    report = json.loads(capsys.readouterr().out)

    assert code == 1
    assert report["check"] is True
    assert report["new"] != report["old"]
    y = report["lanes"][1]
    assert (y["id"], y["status"], y["conflicts"], y["commit"]) == ("y", "conflict", ["a.txt"], None)
    assert report["lanes"][0]["status"] == "merged"
    assert report["lanes"][0]["commit"]
    predicted = merger.merge(open_repo(root), results.MergeScope(check=True))
    assert results.as_json(predicted)["lanes"][1] == y
