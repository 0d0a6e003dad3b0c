"""The chaos suite's own parts, checked with every `make test`: a fault-free run through
the harness holds every invariant, each invariant fires on the violation it guards, a
btime step stays inside its mount namespace, and a seed replays the same plan."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
from chaos_invariants import INVARIANTS, violations
from chaos_namespace import Namespace, copy_proc_stat, step_btime
from chaos_run import ChaosRun, Command, Observed
from chaos_scenarios import FAULTS, HARMLESS, Scenario, make_plan, seeded_scenario

QUIET = Scenario("quiet", (), HARMLESS, seed=5)


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    """One real run without a fault: lanes, agents, execute, merge."""
    return ChaosRun(make_plan(QUIET.seed, QUIET), tmp_path_factory.mktemp("quiet")).run()


def test_a_run_without_faults_holds_every_invariant(quiet_run: Observed) -> None:
    seen = quiet_run
    assert violations(seen, HARMLESS) == []
    assert [c.args[0] for c in seen.commands] == ["init", "add-lane", "execute", "merge"]
    assert all(c.code == 0 for c in seen.commands), seen.story()
    lanes = {lane.lane_id for lane in seen.plan.lanes}
    assert set(seen.records) == lanes  # every agent recorded its run
    commits = [e for events in seen.records.values() for e in events if e["ev"] == "commit"]
    assert commits, "the plan has committing steps: their SHAs are recorded"
    assert seen.samples > 10  # the tracker was sampled while the lanes ran
    assert len(set(seen.base_heads)) == 2  # main moved once, at the merge


def _fires(name: str, seen: Observed) -> list[str]:
    return INVARIANTS[name](seen)


def test_each_invariant_fires_on_its_violation(quiet_run: Observed) -> None:
    lane = quiet_run.plan.lanes[0].lane_id

    def broken() -> Observed:
        return copy.deepcopy(quiet_run)

    seen = broken()
    seen.torn.append("Expecting value: line 1 column 1")
    assert _fires("tracker-parses", seen)
    seen = broken()
    seen.final["lanes"][lane]["status"] = "sideways"
    assert _fires("tracker-parses", seen)
    seen = broken()
    seen.records[lane].append({"ev": "overlap", "pid": 1})
    assert _fires("no-overlap", seen)
    seen = broken()
    seen.records[lane].append({"ev": "commit", "sha": "f" * 40, "attempt": 1})
    assert _fires("commits-reachable", seen)
    seen = broken()
    seen.final["lanes"][lane]["status"] = "running"
    assert _fires("terminal", seen)
    seen = broken()
    seen.ancestry[("a" * 40, "b" * 40)] = False
    assert _fires("base-forward", seen)
    seen = broken()
    seen.records[lane] = [e for e in seen.records[lane] if e["ev"] != "end"]
    assert _fires("killed-named", seen)  # merged, yet its agent never ran to its end
    seen = broken()
    seen.final["lanes"][lane].update(status="failed", error=None)
    assert _fires("killed-named", seen)
    seen = broken()
    seen.leftovers[4242] = ["python3", "agent.py"]
    assert _fires("no-leftovers", seen)
    seen = broken()
    seen.commands.append(Command(["execute"], 70, "", "Traceback (most recent call last):", 1))
    assert len(_fires("clean-exits", seen)) == 2
    seen = broken()
    assert seen.extra["notified"]  # the quiet run's lanes needed review, its commands ended
    assert not _fires("notified-once", seen)
    seen.extra["notified"] += [seen.extra["notified"][0], "{not json"]
    assert len(_fires("notified-once", seen)) == (
        1 if '"run_finished"' in seen.extra["notified"][0] else 2
    )
    seen = broken()
    seen.records[lane].insert(0, {"ev": "start", "pid": 1, "attempt": 1})
    assert _fires("harmless", seen)
    seen = broken()
    seen.injected.append({"fault": "kill-orchestrator", "running": [999999]})
    assert _fires("adopted", seen)
    assert _fires("hostile-acted", quiet_run)
    assert _fires("templates-swept", quiet_run)  # never looked at them
    seen = broken()
    whole = {"name": "a" * 16, "current": True, "ready": True, "whole": True}
    seen.extra["templates"] = [whole]
    assert not _fires("templates-swept", seen)
    seen.extra["templates"] = [{**whole, "whole": False}, {**whole, "current": False}]
    assert len(_fires("templates-swept", seen)) == 2


def test_a_btime_step_is_written_in_place_and_seen_only_inside(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    copy_proc_stat(stat)
    inode = stat.stat().st_ino
    ns = Namespace()
    try:
        ns.mount("--bind", str(stat), "/proc/stat")
        old, new = step_btime(stat, -3600)
        assert new == old - 3600
        assert stat.stat().st_ino == inode
        inside = subprocess.run(
            ns.argv(["grep", "^btime", "/proc/stat"], tmp_path),
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert inside.split() == ["btime", str(new)]
        outside = Path("/proc/stat").read_text().split("btime ", 1)[1].split()[0]
        assert int(outside) != new
    finally:
        ns.close()


def test_a_seed_replays_the_same_plan_and_seeds_cover_every_fault() -> None:
    for seed in (1, 17, 1234):
        assert make_plan(seed, seeded_scenario(seed)) == make_plan(seed, seeded_scenario(seed))
    assert make_plan(1, QUIET) != make_plan(2, QUIET)
    assert {seeded_scenario(s).name for s in range(1, len(FAULTS) + 1)} == set(FAULTS)
