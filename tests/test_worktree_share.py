"""`[worktree] share` (DESIGN.md §15): setup runs once, each new worktree gets its own
copy of the shared folders (a reflink clone or a hard-link farm, never a symlink)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker

SETUP = (
    "echo setup-ran >> {runs} && mkdir -p deps/pkg && "
    "for i in 1 2 3 4 5; do echo dep $i > deps/pkg/f$i.txt; done"
)


def share_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str) -> Path:
    config = BASE_CONFIG + f'[worktree]\nsetup = "{setup}"\nshare = ["deps"]\n'
    return make_repo(tmp_path, monkeypatch, config, files={".gitignore": "deps/\n"})


def test_setup_runs_once_and_each_worktree_gets_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = share_repo(tmp_path, monkeypatch, SETUP.format(runs=runs))
    lanes = {f"l{n}": {"tasks": ["cat deps/pkg/f1.txt > seen.txt"]} for n in range(4)}
    # One lane replaces a shared file, as package managers do: the others keep theirs.
    lanes["l0"]["tasks"] = [
        "rm deps/pkg/f1.txt && echo mine > deps/pkg/f1.txt && cp deps/pkg/f1.txt seen.txt"
    ]
    add_lanes(repo, lanes)
    result = cli(repo, "execute", "--max-parallel", "4")
    assert result.code == 0, result.out + result.err
    assert runs.read_text().splitlines() == ["setup-ran"]  # once, not once a lane
    for n in range(4):
        deps = repo / ".worktrees" / f"agent-l{n}" / "deps"
        assert deps.is_dir()
        assert not deps.is_symlink()
        seen = git(repo, "show", f"lane-l{n}:seen.txt")
        assert seen == ("mine" if n == 0 else "dep 1")
    other = repo / ".worktrees" / "agent-l1" / "deps" / "pkg" / "f1.txt"
    assert other.read_text() == "dep 1\n"
    # Nothing of the shared folder reached a lane's commit.
    assert "deps/" not in git(repo, "ls-tree", "-r", "--name-only", "lane-l1")
    log = (repo / ".orchestration" / "logs" / "agent-l1.log").read_text()
    assert "worktree share: deps (" in log


def test_a_failing_setup_is_named_with_its_command_and_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = share_repo(tmp_path, monkeypatch, "echo cannot resolve left-pad >&2; exit 7")
    add_lanes(repo, {"one": {"tasks": ["true"]}})
    assert cli(repo, "execute").code == 1
    lane = tracker(repo)["lanes"]["one"]
    assert lane["status"] == "failed"
    assert lane["error"].startswith("worktree setup failed (exit 7)")
    log = (repo / ".orchestration" / "logs" / "agent-one.log").read_text()
    assert "echo cannot resolve left-pad" in log
    assert "cannot resolve left-pad\n" in log


def test_a_setup_that_does_not_make_the_shared_folder_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = share_repo(tmp_path, monkeypatch, "true")
    add_lanes(repo, {"one": {"tasks": ["true"]}})
    assert cli(repo, "execute").code == 1
    log = (repo / ".orchestration" / "logs" / "agent-one.log").read_text()
    assert "setup did not make deps (listed in [worktree] share)" in log


@pytest.mark.parametrize("folder", ["/abs", "../up", ".git/hooks"])
def test_a_shared_folder_outside_the_worktree_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch, BASE_CONFIG)
    (repo / "orchestree.toml").write_text(BASE_CONFIG + f'[worktree]\nshare = ["{folder}"]\n')
    result = cli(repo, "status")
    assert result.code == 2
    assert "worktree.share" in result.err
    assert "must be a folder inside the worktree" in result.err
