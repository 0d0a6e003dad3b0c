"""Issue 20: an agent that subverts its worktree (its `.git` link, its HEAD, the folder
itself) gets its lane failed with one line naming what it did; nothing is committed
anywhere, no other repository changes, commits made off the branch are kept, and
`execute`, `merge` and `cleanup` keep working afterwards.

Real repositories, real `orchestree execute`, real scripted agents (hostile_agents.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker
from hostile_agents import SCENARIOS, hostile_config, make_outside, outside_state, write_agents
from orchestree import worktree_guard


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    make_outside(folder)
    return folder


def hostile_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path) -> Path:
    scripts = write_agents(tmp_path / "agents", outside)
    return make_repo(tmp_path, monkeypatch, config=BASE_CONFIG + hostile_config(scripts))


def run_one(repo: Path, scenario: str, lane: str = "h") -> str:
    """Run a lane with the scenario's agent; its one-line error."""
    add_lanes(repo, {lane: {"tasks": ["do it"], "agent": scenario}})
    result = cli(repo, "execute")
    expected = SCENARIOS[scenario]
    assert result.code == (1 if expected.status == "failed" else 0), result.out + result.err
    state = tracker(repo)["lanes"][lane]
    assert state["status"] == expected.status
    error = state["error"] or ""
    assert expected.says in error
    assert "\n" not in error
    line = [ln for ln in result.out.splitlines() if ln.startswith(f"✗ {lane}:")]
    assert len(line) == 1
    assert expected.says in line[0]
    return error


def log_of(repo: Path, ref: str) -> list[str]:
    return git(repo, "log", "--format=%H", ref).splitlines()


def test_deleted_dotgit_commits_nothing_in_the_base_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = hostile_repo(tmp_path, monkeypatch, outside)
    (repo / "README.md").write_text("# the user's own uncommitted edit\n", encoding="utf-8")
    history = log_of(repo, "main")

    error = run_one(repo, "delete-dotgit")

    assert "deleted .worktrees/agent-h/.git" in error
    assert error.endswith("nothing was committed")
    # Before: the leftover commit ran in the base repository and took this edit.
    assert log_of(repo, "main") == history
    assert git(repo, "status", "--porcelain") == "M README.md"
    assert (repo / "README.md").read_text() == "# the user's own uncommitted edit\n"
    assert git(repo, "rev-parse", "lane-h") == history[0]  # the lane branch did not move
    # The agent's work stays where it left it; cleanup keeps that folder and says why.
    assert (repo / ".worktrees" / "agent-h" / "h.txt").read_text() == "work"
    result = cli(repo, "cleanup")
    assert result.code == 0, result.err
    assert "kept worktree .worktrees/agent-h (the agent deleted" in result.out
    assert (repo / ".worktrees" / "agent-h" / "h.txt").exists()


@pytest.mark.parametrize("scenario", ["rewrite-dotgit", "symlink-worktree"])
def test_another_repository_is_never_committed_to_and_reruns_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path, scenario: str
) -> None:
    repo = hostile_repo(tmp_path, monkeypatch, outside)
    before = outside_state(outside)
    history = log_of(repo, "main")

    error = run_one(repo, scenario)

    what = "rewrote .worktrees/agent-h/.git" if scenario == "rewrite-dotgit" else "symlink"
    assert what in error
    assert outside_state(outside) == before  # the other repository did not change
    assert log_of(repo, "main") == history
    # Before: every rerun exited 3 with a raw git error and the lane stayed running.
    again = cli(repo, "execute")
    assert again.code == 1, again.err
    assert "Traceback" not in again.err
    assert "fatal:" not in again.err
    assert tracker(repo)["lanes"]["h"]["status"] == "failed"
    merged = cli(repo, "merge")  # nothing completed: nothing to merge, the failure named
    assert merged.code == 1, merged.err
    assert "still outstanding from earlier runs: h (failed)" in merged.out
    cleaned = cli(repo, "cleanup", "--force")
    assert cleaned.code == 0, cleaned.err
    assert "kept worktree .worktrees/agent-h" in cleaned.out  # never through a symlink
    assert outside_state(outside) == before


def test_commits_on_a_detached_head_are_kept_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = hostile_repo(tmp_path, monkeypatch, outside)
    history = log_of(repo, "main")

    error = run_one(repo, "detach")

    ref = "refs/orchestree/attempts/h/1"
    assert f"its commits are kept at {ref}" in error
    kept = git(repo, "rev-parse", ref)
    assert git(repo, "show", f"{kept}:h.txt") == "detached work"
    assert git(repo, "rev-parse", "lane-h") == history[0]  # nothing on the lane branch
    # Before: the lane was `completed` and merged as "already in main".
    merged = cli(repo, "merge")
    assert merged.code == 1  # the failed lane is outstanding
    assert "no completed lanes" in merged.out
    assert log_of(repo, "main") == history
    # Before: plain cleanup made those commits unreachable.
    assert cli(repo, "cleanup").code == 0
    assert git(repo, "rev-parse", ref) == kept
    assert git(repo, "show", f"{ref}:h.txt") == "detached work"


def test_cleanup_keeps_commits_found_off_the_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    # A person (or an agent of an earlier orchestree) leaves a lane's worktree on a
    # detached HEAD with a commit: cleanup --force keeps that commit under a ref.
    repo = hostile_repo(tmp_path, monkeypatch, outside)
    add_lanes(repo, {"x": {"tasks": ["echo x > x.txt"]}})
    assert cli(repo, "execute").code == 0
    wt = repo / ".worktrees" / "agent-x"
    git(wt, "checkout", "-q", "--detach")
    (wt / "later.txt").write_text("later\n", encoding="utf-8")
    git(wt, "add", "-A")
    git(wt, "commit", "-qm", "later")
    later = git(wt, "rev-parse", "HEAD")

    result = cli(repo, "cleanup", "--force")

    assert result.code == 0, result.err
    ref = "refs/orchestree/attempts/x/1"
    assert "kept commits of .worktrees/agent-x (the agent detached" in result.out
    assert ref in result.out
    assert git(repo, "rev-parse", ref) == later
    assert not wt.exists()


def test_a_retry_never_runs_an_agent_in_a_worktree_that_is_not_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = hostile_repo(tmp_path, monkeypatch, outside)
    run_one(repo, "delete-dotgit")
    history = log_of(repo, "main")

    result = cli(repo, "retry", "h")  # runs the lane again at once

    assert result.code == 1
    assert "check" in result.out
    assert "remove it, then retry" in result.out
    state = tracker(repo)["lanes"]["h"]
    assert state["status"] == "failed"
    assert "deleted .worktrees/agent-h/.git" in state["error"]
    assert state["attempts"] == 2
    assert log_of(repo, "main") == history
    assert not (repo / ".worktrees" / "agent-h" / ".git").exists()  # nothing ran there
    assert tracker(repo)["agents"]["agent-h"]["status"] == "failed"


def test_verify_names_each_change_and_hands_no_agent_text_to_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = hostile_repo(tmp_path, monkeypatch, outside)
    wt = repo / ".worktrees" / "agent-v"
    git(repo, "worktree", "add", "-q", "-b", "lane-v", str(wt))
    admin = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    admin = admin / "worktrees" / "agent-v"
    assert worktree_guard.verify(repo, wt, "lane-v") == worktree_guard.WorktreeCheck(admin, None)

    git(wt, "switch", "-q", "-c", "elsewhere")
    check = worktree_guard.verify(repo, wt, "lane-v")
    assert check.problem == "the agent switched its worktree to branch elsewhere"
    assert check.off_branch == git(repo, "rev-parse", "elsewhere")

    (admin / "HEAD").write_text(f"--output={tmp_path / 'x'}\nmore\n", encoding="utf-8")
    check = worktree_guard.verify(repo, wt, "lane-v")
    assert (
        check.problem == f"the agent detached its worktree's HEAD (--output={tmp_path / 'x'} more)"
    )
    assert check.off_branch is None
    assert not (tmp_path / "x").exists()

    (admin / "HEAD").write_text("ref: refs/heads/lane-v\n", encoding="utf-8")
    (admin / "commondir").write_text(str(outside / "other" / ".git"), encoding="utf-8")
    check = worktree_guard.verify(repo, wt, "lane-v")
    assert check.admin is None
    assert "no longer points at this repository" in (check.problem or "")
