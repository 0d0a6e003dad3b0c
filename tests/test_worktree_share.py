"""`[worktree] share` (DESIGN.md §15): setup runs once, each new worktree gets its own
copy of the shared folders (a reflink clone or a hard-link farm, never a symlink)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker, wait_for
from orchestree import worktree_share

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


def _copies(repo: Path) -> list[Path]:
    """The complete copies of `deps` made ahead, across templates."""
    return sorted((repo / ".orchestration" / "share").glob("*/copies/0/c-*"))


def _inode(path: Path) -> int:
    return path.stat().st_ino


def test_lanes_take_copies_made_ahead_each_its_own_and_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = share_repo(tmp_path, monkeypatch, SETUP.format(runs=runs))
    # A first run lasts until the stock holds max_parallel (3) copies made ahead.
    copies = "../../.orchestration/share/*/copies/0/c-*"
    wait = f"until [ $(ls -d {copies} | wc -l) -ge 3 ]; do sleep 0.1; done"
    add_lanes(repo, {"first": {"tasks": [wait], "timeout_s": 60}})
    assert cli(repo, "execute", "--max-parallel", "3").code == 0
    ahead = _copies(repo)
    assert len(ahead) == 3
    template = next((repo / ".orchestration" / "share").glob("*/tree/deps"))
    made = {_inode(p) for p in ahead}
    lanes = {f"l{n}": {"tasks": ["cat deps/pkg/f1.txt > seen.txt"]} for n in range(3)}
    lanes["l0"]["tasks"] = [  # replaces a shared file, as package managers do
        "rm deps/pkg/f1.txt && echo mine > deps/pkg/f1.txt && cp deps/pkg/f1.txt seen.txt"
    ]
    add_lanes(repo, lanes)
    result = cli(repo, "execute", "--max-parallel", "3")
    assert result.code == 0, result.out + result.err
    assert runs.read_text().splitlines() == ["setup-ran"]
    folders = [repo / ".worktrees" / f"agent-l{n}" / "deps" for n in range(3)]
    for n, deps in enumerate(folders):
        log = (repo / ".orchestration" / "logs" / f"agent-l{n}.log").read_text()
        assert "worktree share: deps (hardlink, made ahead)" in log
        assert not deps.is_symlink()
        assert _inode(deps) in made  # one of the copies, moved in whole
        seen = git(repo, "show", f"lane-l{n}:seen.txt")
        assert seen == ("mine" if n == 0 else "dep 1")
        kept = deps / "pkg" / "f2.txt"  # still the template's file, and read-only
        assert _inode(kept) == _inode(template / "pkg" / "f2.txt")
        assert kept.stat().st_mode & 0o222 == 0
    assert len({_inode(d) for d in folders}) == 3  # never one copy for two lanes
    assert (template / "pkg" / "f1.txt").read_text() == "dep 1\n"
    assert not any(p.exists() for p in ahead)  # taken, not copied again
    assert not list((repo / ".orchestration" / "share").glob("*/copies/0/.making-*"))


def test_the_stock_fills_to_its_size_and_sweeps_what_a_kill_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = share_repo(tmp_path, monkeypatch, SETUP.format(runs=tmp_path / "runs"))
    base = git(repo, "rev-parse", "HEAD")
    home = repo / ".orchestration" / "share"
    setup = SETUP.format(runs=tmp_path / "runs")

    def run_setup(cwd: Path) -> int:
        return subprocess.run(["sh", "-c", setup], cwd=cwd, check=False).returncode

    made = worktree_share.made_for(home, worktree_share.key(base, setup, ["deps"]))
    tree, code, _ = worktree_share.template(made, repo, base, ["deps"], run_setup)
    assert code == 0
    assert tree is not None
    # No copy made ahead yet: the lane links its own farm of the template's files.
    own = tmp_path / "own" / "deps"
    assert worktree_share.give(tree, tmp_path / "own", ["deps"]) == "hardlink"
    assert _inode(own / "pkg" / "f1.txt") == _inode(tree / "deps" / "pkg" / "f1.txt")
    assert (own / "pkg" / "f1.txt").stat().st_mode & 0o222 == 0
    cut = made / "copies" / "0" / ".making-dead"  # a copy whose maker was SIGKILLed
    (cut / "pkg").mkdir(parents=True)
    stock = worktree_share.Stock(made, ["deps"], 2)
    with worktree_share.background(stock):
        assert not cut.exists()
        wait_for(lambda: stock.counts() == [2], 30, "two copies made ahead")
        dest = tmp_path / "wt" / "deps"
        dest.parent.mkdir()
        # Two takers, one copy each: the second finds the first's gone and takes another.
        assert worktree_share._take(made, 0, dest)
        assert worktree_share._take(made, 0, tmp_path / "wt" / "other")
        assert _inode(dest) != _inode(tmp_path / "wt" / "other")
        assert sorted(p.name for p in (dest / "pkg").iterdir()) == [
            f"f{i}.txt" for i in range(1, 6)
        ]
        wait_for(lambda: stock.counts() == [2], 30, "the stock made up for them")
    assert stock.counts() == [2]  # complete copies stay for the next run
    assert not list((made / "copies" / "0").glob(".making-*"))
    assert not worktree_share._take(made, 1, tmp_path / "wt" / "none")  # no such stock
