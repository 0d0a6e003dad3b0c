"""`[worktree] share` (DESIGN.md §15): setup runs once, each new worktree gets its own
copy of the shared folders (a reflink clone or a hard-link farm, never a symlink)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker, wait_for
from orchestree import git as gitcmd
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


# --- `[worktree] share_key`: the template follows the lockfile, not the base commit ----

# Installs what the lockfile says; each run of it is counted outside the repository.
LOCK_SETUP = "echo setup-ran >> {runs} && mkdir -p deps && cp deps.lock deps/installed.txt"


def keyed_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: Path, share_key: str | None
) -> Path:
    config = BASE_CONFIG + f'[worktree]\nsetup = "{LOCK_SETUP.format(runs=runs)}"\n'
    config += 'share = ["deps"]\n' + (f"share_key = {share_key}\n" if share_key else "")
    files = {".gitignore": "deps/\n", "deps.lock": "left-pad 1.0\n"}
    return make_repo(tmp_path, monkeypatch, config, files=files)


def _run_lane(repo: Path, lane: str, first: list[str] | None = None) -> str:
    """Run one lane that reads the installed lockfile; its log."""
    add_lanes(repo, {lane: {"tasks": [*(first or []), "cp deps/installed.txt seen.txt"],
                            "timeout_s": 60}})  # fmt: skip
    result = cli(repo, "execute", "--max-parallel", "1")
    assert result.code == 0, result.out + result.err
    return (repo / ".orchestration" / "logs" / f"agent-{lane}.log").read_text()


def _commit(repo: Path, rel: str, text: str) -> str:
    (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "commit", "-q", "-am", f"change {rel}")
    return git(repo, "rev-parse", "HEAD")


def _templates(repo: Path) -> dict[str, str]:
    """Each template's key -> the lockfile it was installed from."""
    home = repo / ".orchestration" / "share"
    return {p.parents[2].name: p.read_text() for p in home.glob("*/tree/deps/installed.txt")}


def _set_status(repo: Path, lane: str, status: str) -> None:
    from orchestree.models import Tracker
    from orchestree.repo import open_repo

    def change(t: Tracker) -> None:
        t.lanes[lane].status = status  # type: ignore[assignment]

    open_repo(repo).store.update(change, "test")


def test_with_share_key_a_merge_that_leaves_the_lockfile_keeps_the_template_and_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = keyed_repo(tmp_path, monkeypatch, runs, '["*.lock"]')
    # Base commit A: the first run builds the template and lasts until a copy is made ahead.
    copy = "../../.orchestration/share/*/copies/0/c-*"
    wait = f"until ls -d {copy} >/dev/null 2>&1; do sleep 0.1; done"
    _run_lane(repo, "a", [wait])
    base_a = tracker(repo)["base_commit"]
    assert runs.read_text().splitlines() == ["setup-ran"]
    assert len(_copies(repo)) == 1
    # Base commit B: a change that is not the lockfile's. The template and its copy serve.
    base_b = _commit(repo, "README.md", "# changed\n")
    log = _run_lane(repo, "b")
    assert tracker(repo)["base_commit"] == base_b != base_a
    assert runs.read_text().splitlines() == ["setup-ran"]  # setup did not run again
    assert "worktree share: deps (hardlink, made ahead)" in log
    assert git(repo, "show", "lane-b:seen.txt") == "left-pad 1.0"
    assert list(_templates(repo).values()) == ["left-pad 1.0\n"]
    # Base commit C: the lockfile changed. A new template, from the new lockfile.
    _commit(repo, "deps.lock", "left-pad 2.0\n")
    _run_lane(repo, "c")
    assert runs.read_text().splitlines() == ["setup-ran", "setup-ran"]
    assert git(repo, "show", "lane-c:seen.txt") == "left-pad 2.0"
    templates = _templates(repo)
    assert sorted(templates.values()) == ["left-pad 1.0\n", "left-pad 2.0\n"]
    old = next(k for k, v in templates.items() if v == "left-pad 1.0\n")
    # While a lane runs (its supervisor may be taking a copy), cleanup leaves templates.
    add_lanes(repo, {"d": {"tasks": ["cp deps/installed.txt seen.txt"]}})
    _set_status(repo, "d", "running")
    kept = cli(repo, "cleanup")
    assert kept.code == 0, kept.out + kept.err
    assert "share template" not in kept.out
    assert len(_templates(repo)) == 2
    _set_status(repo, "d", "pending")
    cleaned = cli(repo, "cleanup")
    assert cleaned.code == 0, cleaned.out + cleaned.err
    said = f"removed stale share template .orchestration/share/{old}"
    # ... with the copy run b's stock made, if it lasted a second after its lane's start.
    assert [line for line in cleaned.out.splitlines() if "share template" in line] in (
        [said],
        [f"{said} and its copy made ahead"],
    )
    assert list(_templates(repo).values()) == ["left-pad 2.0\n"]
    assert not (repo / ".orchestration" / "share" / f"{old}.lock").exists()
    # The current one stays and serves the next run.
    assert cli(repo, "execute").code == 0
    assert git(repo, "show", "lane-d:seen.txt") == "left-pad 2.0"
    assert runs.read_text().splitlines() == ["setup-ran", "setup-ran"]
    assert "share template" not in cli(repo, "cleanup").out


def test_without_share_key_each_base_commit_has_its_own_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = keyed_repo(tmp_path, monkeypatch, runs, None)
    setup = LOCK_SETUP.format(runs=runs)
    _run_lane(repo, "a")
    key_a = worktree_share.key_at(repo, tracker(repo)["base_commit"], setup, ["deps"], [])
    _commit(repo, "README.md", "# changed\n")  # setup may read any file: it runs again
    _run_lane(repo, "b")
    assert runs.read_text().splitlines() == ["setup-ran", "setup-ran"]
    key_b = worktree_share.key_at(repo, tracker(repo)["base_commit"], setup, ["deps"], [])
    home = repo / ".orchestration" / "share"
    assert {p.name for p in home.iterdir() if p.is_dir()} == {key_a, key_b}
    # Cleanup removes the template of the commit the base branch left, and its copies.
    stock = worktree_share.Stock(home / key_a, ["deps"], 1)
    stock._make(0)
    stock._make(0)
    [copies] = stock.counts()
    cleaned = cli(repo, "cleanup")
    assert cleaned.code == 0, cleaned.out + cleaned.err
    assert {p.name for p in home.iterdir() if p.is_dir()} == {key_b}
    said = f"removed stale share template .orchestration/share/{key_a} and its {copies} copies"
    assert f"{said} made ahead\n" in cleaned.out


def test_the_basis_is_the_matching_files_or_the_commit_when_none_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"deps.lock": "a\n", "sub/pkg/requirements-dev.txt": "b\n", "notes.txt": "c\n"}
    repo = make_repo(tmp_path, monkeypatch, BASE_CONFIG, files=files)
    a = git(repo, "rev-parse", "HEAD")
    watched = ["*.lock", "**/requirements*.txt"]
    basis_a = worktree_share.basis(repo, a, watched)
    blob = git(repo, "rev-parse", "HEAD:sub/pkg/requirements-dev.txt")
    assert basis_a.splitlines()[1:] == [
        f"100644 {git(repo, 'rev-parse', 'HEAD:deps.lock')} deps.lock",
        f"100644 {blob} sub/pkg/requirements-dev.txt",
    ]
    b = _commit(repo, "notes.txt", "changed\n")
    assert worktree_share.basis(repo, b, watched) == basis_a
    c = _commit(repo, "sub/pkg/requirements-dev.txt", "changed\n")
    assert worktree_share.basis(repo, c, watched) != basis_a
    # `*` stops at a folder: a nested file is not the root's pattern's.
    assert worktree_share.basis(repo, c, ["requirements*.txt"]) == c
    assert worktree_share.basis(repo, c, ["missing.lock"]) == c  # a typo: as if unset
    assert worktree_share.basis(repo, c, []) == c
    # A user's own pathspec settings neither refuse the globs nor change them.
    for name in ("GIT_LITERAL_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS"):
        monkeypatch.setenv(name, "1")
        assert gitcmd.files_matching(repo, a, watched) == basis_a.splitlines()[1:]
        monkeypatch.delenv(name)


def test_sweep_leaves_a_template_being_built(tmp_path: Path) -> None:
    import fcntl

    home = tmp_path / "share"
    building, stale, kept = home / ("a" * 16), home / ("b" * 16), home / ("c" * 16)
    for made in (building, stale, kept):
        (made / "tree").mkdir(parents=True)
    (home / "not-a-template").mkdir()
    with open(home / f"{building.name}.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert worktree_share.sweep(home, {kept.name}) == [(stale.name, 0)]
    assert building.is_dir()
    assert kept.is_dir()
    assert (home / "not-a-template").is_dir()
    assert not stale.exists()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('["../deps.lock"]', "must be a file or glob inside the repository"),
        ('["/etc/passwd"]', "must be a file or glob inside the repository"),
        ('[":(icase)deps.lock"]', "must be a file or glob inside the repository"),
        ('[""]', "must be a file or glob inside the repository"),
        ('"deps.lock"', "list"),
    ],
)
def test_a_bad_share_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch, BASE_CONFIG)
    config = BASE_CONFIG + f'[worktree]\nsetup = "true"\nshare = ["deps"]\nshare_key = {value}\n'
    (repo / "orchestree.toml").write_text(config)
    result = cli(repo, "execute")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "worktree.share_key" in result.err
    assert why in result.err
    assert not (repo / ".orchestration" / "share").exists()


def test_doctor_says_what_keys_the_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = keyed_repo(tmp_path, monkeypatch, runs, None)
    unset = next(line for line in cli(repo, "doctor").out.splitlines() if "share_key" in line)
    assert unset.startswith("✓ [worktree] share_key")
    said = "unset: share's template is made again on each new base commit (after every merge)"
    assert unset.endswith(f"{said}; name the lockfiles setup reads to keep it")
    config = (repo / "orchestree.toml").read_text()
    (repo / "orchestree.toml").write_text(config + 'share_key = ["*.lock"]\n')
    out = cli(repo, "doctor").out
    assert "✓ [worktree] share_key" in out
    assert "share's template is made again when these change: deps.lock" in out
    (repo / "orchestree.toml").write_text(config + 'share_key = ["package-lock.json"]\n')
    done = cli(repo, "doctor")
    assert "✗ [worktree] share_key" in done.out
    assert "matches no file of main, so the base commit keys the template" in done.out
    assert done.code == 3
