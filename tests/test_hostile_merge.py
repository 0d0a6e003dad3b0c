"""Issue 20: orchestree's own paths and the user's ignored files survive whatever an
agent writes or commits: never committed by the leftover commit, never merged, never
overwritten by the fast-forward (which names the files and the lane instead).

Real repositories, real `orchestree execute` and `merge`, scripted agents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker
from helpers import assert_one_line
from hostile_agents import hostile_config, make_outside, outside_state, write_agents

USER_ENV = "SECRET=the user's own\n"
USER_CONF = "LOCAL=the user's own\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    make_outside(folder)
    return folder


def user_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path) -> Path:
    """A repository whose user keeps an ignored `.env` and `conf/local.env`, copied
    into each worktree."""
    scripts = write_agents(tmp_path / "agents", outside)
    ignored = ".env\nconf/local.env\n"
    repo = make_repo(
        tmp_path,
        monkeypatch,
        config=BASE_CONFIG + hostile_config(scripts),
        files={".gitignore": ignored, ".worktreeinclude": ignored, "conf/app.toml": "\n"},
    )
    (repo / ".env").write_text(USER_ENV, encoding="utf-8")
    (repo / "conf" / "local.env").write_text(USER_CONF, encoding="utf-8")
    return repo


def tree_of(repo: Path, ref: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", ref).splitlines()


def orchestree_intact(repo: Path) -> None:
    """The tracker parses, and orchestree's folders are folders."""
    assert (repo / ".orchestration").is_dir()
    assert (repo / ".worktrees").is_dir()
    json.loads((repo / ".orchestration" / "tracker.json").read_text(encoding="utf-8"))
    assert cli(repo, "status", "--json").code == 0


def test_files_named_like_orchestrees_folders_are_never_committed_or_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = user_repo(tmp_path, monkeypatch, outside)
    add_lanes(repo, {"h": {"tasks": ["t"], "agent": "orch-file"}})
    assert cli(repo, "execute").code == 0

    files = tree_of(repo, "lane-h")
    assert "h.txt" in files
    assert ".worktrees" not in files
    assert ".orchestration" not in files
    merged = cli(repo, "merge")

    assert merged.code == 0, merged.out
    orchestree_intact(repo)
    assert (repo / "h.txt").read_text() == "work"


def test_a_lane_committing_orchestrees_paths_is_held_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = user_repo(tmp_path, monkeypatch, outside)
    add_lanes(
        repo,
        {
            "x": {"tasks": ["echo mine > x.txt"]},
            "h": {"tasks": ["t"], "agent": "commits-orch-paths"},
        },
    )
    assert cli(repo, "execute").code == 0
    (repo / ".worktrees" / "agent-x" / "README.md").write_text("lane x's own\n", "utf-8")
    head = git(repo, "rev-parse", "main")

    merged = cli(repo, "merge", "--lane", "h")

    assert merged.code == 1
    line = [ln for ln in merged.out.splitlines() if " h " in ln]
    assert len(line) == 1
    assert "skipped" in line[0]
    assert "orchestree's own paths (.worktrees/agent-x/README.md)" in line[0]
    assert git(repo, "rev-parse", "main") == head
    assert (repo / ".worktrees" / "agent-x" / "README.md").read_text() == "lane x's own\n"
    lane = tracker(repo)["lanes"]["h"]
    assert (lane["status"], lane["merge"]["status"]) == ("completed", "skipped")
    assert ".worktrees/agent-x/README.md" in lane["error"]
    orchestree_intact(repo)


def test_an_agents_gitignore_cannot_get_the_users_env_or_the_tracker_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = user_repo(tmp_path, monkeypatch, outside)
    add_lanes(repo, {"h": {"tasks": ["t"], "agent": "unignore"}})
    assert cli(repo, "execute").code == 0

    files = tree_of(repo, "lane-h")
    assert ".gitignore" in files
    assert "h.txt" in files
    assert ".env" not in files  # the copy from .worktreeinclude (the agent rewrote it)
    assert not any(f.startswith(".orchestration") for f in files)
    assert cli(repo, "merge").code == 0
    assert (repo / ".env").read_text() == USER_ENV
    orchestree_intact(repo)


def test_merge_refuses_to_overwrite_an_ignored_file_naming_it_and_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = user_repo(tmp_path, monkeypatch, outside)
    add_lanes(repo, {"h": {"tasks": ["t"], "agent": "commits-env"}})
    assert cli(repo, "execute").code == 0
    assert ".env" in tree_of(repo, "lane-h")  # committed by the agent itself
    head = git(repo, "rev-parse", "main")
    before = tracker(repo)

    merged = cli(repo, "merge")

    # Before: git's fast-forward overwrote the ignored .env without a word.
    assert merged.code == 3
    assert_one_line(merged.err, "lane h", ".env", "untracked or ignored", "nothing was published")
    assert (repo / ".env").read_text() == USER_ENV
    assert git(repo, "rev-parse", "main") == head
    assert tracker(repo)["lanes"] == before["lanes"]
    check = cli(repo, "merge", "--check")
    assert "`merge` will refuse: lane h: it would overwrite .env" in check.out


def test_includes_are_never_copied_through_a_symlink_a_lane_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    repo = user_repo(tmp_path, monkeypatch, outside)
    before = outside_state(outside)
    add_lanes(
        repo,
        {
            "dep": {"tasks": ["t"], "agent": "env-symlink"},
            "next": {"tasks": ["test -L .env && echo seen > next.txt"], "depends_on": ["dep"]},
        },
    )

    result = cli(repo, "execute")

    assert result.code == 0, result.out
    # Before: the copy followed `.env -> outside/secret-target` and wrote the secret
    # there (and `conf/local.env` into outside/secret-dir through `conf`).
    assert not os.path.lexists(outside / "secret-target")
    assert not os.path.lexists(outside / "secret-dir" / "local.env")
    assert outside_state(outside) == before
    worktree = repo / ".worktrees" / "agent-next"
    assert os.readlink(worktree / ".env") == str(outside / "secret-target")
    assert os.readlink(worktree / "conf") == str(outside / "secret-dir")
    assert git(repo, "show", "lane-next:next.txt") == "seen"
    # And the merge will not put those symlinks over the user's ignored files.
    merged = cli(repo, "merge")
    assert merged.code == 3
    assert_one_line(merged.err, "lane dep", ".env", "conf")
    assert (repo / ".env").read_text() == USER_ENV
    assert (repo / "conf" / "local.env").read_text() == USER_CONF


@pytest.mark.parametrize("name", [".orchestration", ".worktrees", "access_tracker.py"])
def test_a_lane_that_commits_a_file_named_like_orchestrees_paths_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path, name: str
) -> None:
    repo = user_repo(tmp_path, monkeypatch, outside)
    task = f"rm -f {name}; echo x > {name} && git add -f {name} && git commit -qm x"
    add_lanes(repo, {"h": {"tasks": [task]}})
    assert cli(repo, "execute").code == 0
    assert name in tree_of(repo, "lane-h")
    head = git(repo, "rev-parse", "main")

    merged = cli(repo, "merge")

    assert merged.code == 1
    assert f"orchestree's own paths ({name})" in merged.out
    assert git(repo, "rev-parse", "main") == head
    orchestree_intact(repo)
