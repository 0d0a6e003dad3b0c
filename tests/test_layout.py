"""layout.py: where orchestree keeps things, and how a lane id names its branch, agent,
worktree, log and results folder. A Layout is built from a root passed in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import git, make_repo
from orchestree.layout import (
    AGENT_EXCLUDES,
    EXCLUDES,
    PLAN_FILE,
    Layout,
    agent_name,
    branch,
    results_dir,
)

# Accepted lane ids at the edges of what `models.check_lane_id` allows.
EDGE_IDS = ["a", "0", "v1.2", "a_b-c", "x" * 63, "db-projection", "1-"]


def test_orchestrees_state_lives_under_dot_orchestration(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    orch = tmp_path / ".orchestration"
    assert layout.orch == orch
    assert layout.tracker == orch / "tracker.json"
    assert layout.run_lock == orch / "run.lock"
    assert layout.events == orch / "events.jsonl"
    assert layout.logs == orch / "logs"
    assert layout.cancel_requests == orch / "cancel"
    assert layout.archive == orch / "archive"
    assert layout.helper == orch / "access_tracker.py"
    assert layout.generated == tmp_path / "docs" / "_generated"
    assert (
        layout.plan_file == tmp_path / PLAN_FILE == tmp_path / "docs/_generated/execution_plan.json"
    )


def test_a_lanes_names_and_paths_derive_from_its_id(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert branch("db") == "lane-db"
    assert agent_name("db") == "agent-db"
    assert results_dir("db") == "docs/_generated/db"
    assert layout.worktree("db") == tmp_path.resolve() / ".worktrees" / "agent-db"
    assert layout.log("db") == tmp_path / ".orchestration" / "logs" / "agent-db.log"


def test_the_worktree_root_is_configurable_and_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "trees").mkdir()
    (tmp_path / "link").symlink_to(real)
    layout = Layout(tmp_path / "link", worktree_root="trees")
    assert layout.worktrees == real / "trees"  # symlinks resolved: git reports real paths
    assert layout.worktree("a") == real / "trees" / "agent-a"
    assert Layout(tmp_path, "nested/deeper").worktrees == tmp_path.resolve() / "nested/deeper"


def test_rel_is_relative_inside_the_root_and_absolute_outside(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "repo")
    assert layout.rel(layout.log("a")) == ".orchestration/logs/agent-a.log"
    assert layout.rel(tmp_path / "elsewhere" / "x") == str(tmp_path / "elsewhere" / "x")


@pytest.mark.parametrize("lane_id", EDGE_IDS)
def test_every_accepted_lane_id_makes_a_valid_branch_and_one_folder(
    lane_id: str, tmp_path: Path
) -> None:
    checked = subprocess.run(
        ["git", "check-ref-format", "--branch", branch(lane_id)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    layout = Layout(tmp_path)
    assert layout.worktree(lane_id).parent == layout.worktrees
    assert layout.log(lane_id).parent == layout.logs
    assert Path(results_dir(lane_id)).parent == Path("docs/_generated")


def test_names_of_two_lanes_never_collide() -> None:
    ids = ["a", "a.b", "a-b", "a_b", "ab", "lane-a", "agent-a"]
    for make in (branch, agent_name, results_dir):
        assert len({make(i) for i in ids}) == len(ids)


def test_excludes_keep_orchestrees_files_out_of_commits_only_at_the_root(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    exclude = root / ".git" / "info" / "exclude"
    exclude.write_text("\n".join([*EXCLUDES, *AGENT_EXCLUDES]) + "\n", encoding="utf-8")
    (root / ".orchestration").write_text("a FILE an agent wrote\n", encoding="utf-8")
    (root / "access_tracker.py").write_text("helper\n", encoding="utf-8")
    (root / ".aider.chat.history.md").write_text("chat\n", encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "access_tracker.py").write_text("the user's own\n", encoding="utf-8")
    (root / "sub" / ".orchestration").write_text("the user's own\n", encoding="utf-8")
    untracked = git(root, "ls-files", "--others", "--exclude-standard").splitlines()
    assert untracked == ["sub/.orchestration", "sub/access_tracker.py"]
    (root / ".orchestration").unlink()
    (root / ".orchestration").mkdir()  # the folder too
    (root / ".orchestration" / "tracker.json").write_text("{}\n", encoding="utf-8")
    untracked = git(root, "ls-files", "--others", "--exclude-standard").splitlines()
    assert untracked == ["sub/.orchestration", "sub/access_tracker.py"]


def test_a_layout_is_a_value(tmp_path: Path) -> None:
    assert Layout(tmp_path) == Layout(tmp_path, ".worktrees")
    assert Layout(tmp_path) != Layout(tmp_path, "trees")
    with pytest.raises(AttributeError):
        Layout(tmp_path).root = tmp_path / "x"  # type: ignore[misc]
