"""Issue 20: every hostile agent of hostile_agents.py at once, beside an honest lane, in
one `execute` + `merge` + `cleanup`; the same invariants hold throughout: the user's
files and history intact, nothing outside the repository changed, the tracker valid,
every hostile lane failed or held with one line, and the honest lane merged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker
from hostile_agents import SCENARIOS, hostile_config, make_outside, outside_state, write_agents
from orchestree.tracker import TrackerStore

USER_ENV = "SECRET=the user's own\n"


def invariants(repo: Path, outside: Path, before: dict[str, str], main: list[str]) -> None:
    assert outside_state(outside) == before
    assert (repo / ".env").read_text() == USER_ENV
    # The base only moves forward: what it was is still its history (order by date is
    # not reliable when the commits share a second).
    git(repo, "merge-base", "--is-ancestor", main[0], "main")  # raises when it is not
    TrackerStore(repo / ".orchestration" / "tracker.json").read()  # valid, or it raises
    assert (repo / ".worktrees").is_dir()


def test_all_hostile_agents_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    make_outside(outside)
    scripts = write_agents(tmp_path / "agents", outside)
    repo = make_repo(
        tmp_path,
        monkeypatch,
        config=BASE_CONFIG.replace("max_parallel = 4", "max_parallel = 3")
        + hostile_config(scripts),
        files={".gitignore": ".env\n", ".worktreeinclude": ".env\n"},
    )
    (repo / ".env").write_text(USER_ENV, encoding="utf-8")
    lanes = {name: {"tasks": ["t"], "agent": name} for name in SCENARIOS}
    add_lanes(repo, {**lanes, "honest": {"tasks": ["echo honest > honest.txt"]}})
    before, main = outside_state(outside), git(repo, "log", "--format=%H", "main").splitlines()

    assert cli(repo, "execute").code == 1
    state = tracker(repo)["lanes"]
    for name, scenario in SCENARIOS.items():
        assert state[name]["status"] == scenario.status, name
        assert scenario.says in (state[name]["error"] or ""), name
    assert state["honest"]["status"] == "completed"
    invariants(repo, outside, before, main)

    merged = cli(repo, "merge")  # the first lane to bring a .env is named (the second
    assert merged.code == 3  # conflicts with it, so it never reaches the fast-forward)
    refused = {n for n, s in SCENARIOS.items() if s.merge == "refused"}
    assert any(f"lane {name}: it would overwrite .env" in merged.err for name in refused)
    assert git(repo, "log", "--format=%H", "main").splitlines() == main
    invariants(repo, outside, before, main)

    for name, scenario in SCENARIOS.items():
        if scenario.merge in ("merged", "skipped"):
            result = cli(repo, "merge", "--lane", name)
            assert result.code == (0 if scenario.merge == "merged" else 1), name
    assert cli(repo, "merge", "--lane", "honest").code == 0
    assert (repo / "honest.txt").read_text() == "honest\n"
    invariants(repo, outside, before, main)

    cleaned = cli(repo, "cleanup")
    assert cleaned.code == 0, cleaned.err
    kept = git(repo, "rev-parse", "refs/orchestree/attempts/detach/1")
    assert git(repo, "show", f"{kept}:detach.txt") == "detached work"
    invariants(repo, outside, before, main)
