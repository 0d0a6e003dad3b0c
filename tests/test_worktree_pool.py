"""`[worktree] pool = N` (DESIGN.md §15): worktrees prepared ahead of time, so a lane
only claims one and checks out its start commit."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from exec_helpers import (
    BASE_CONFIG,
    PYTHON,
    add_lanes,
    cli,
    git,
    make_repo,
    spawn,
    statuses,
    tracker,
    wait_for,
)

SETUP = (
    "echo $PWD >> {runs} && mkdir -p deps/pkg && "
    "for i in 1 2 3; do echo dep $i > deps/pkg/f$i.txt; done && echo made > made.txt"
)


def pool_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, size: int = 2,
              extra: str = "") -> Path:  # fmt: skip
    config = BASE_CONFIG + f'[worktree]\nsetup = "{setup}"\npool = {size}\n' + extra
    return make_repo(tmp_path, monkeypatch, config, files={".gitignore": "deps/\n"})


def test_lanes_claim_prepared_worktrees_and_commit_only_their_own_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = pool_repo(tmp_path, monkeypatch, SETUP.format(runs=runs))
    _fill(repo, 2, SETUP.format(runs=runs))  # spares made ahead, as a run leaves them
    lanes = {f"l{n}": {"tasks": [f"cat deps/pkg/f1.txt > seen{n}.txt"]} for n in range(3)}
    lanes["l0"]["tasks"].append("echo changed by the agent > made.txt")
    add_lanes(repo, lanes)
    result = cli(repo, "execute", "--max-parallel", "1")
    assert result.code == 0, result.out + result.err
    ran_in = runs.read_text().splitlines()
    for n in range(3):
        log = (repo / ".orchestration" / "logs" / f"agent-l{n}.log").read_text()
        # l0 and l1 take the two spares; l2 one refilled meanwhile (or runs setup itself)
        pooled = "orchestree: worktree from the pool (p-" in log
        assert pooled or (n == 2 and "orchestree: worktree setup: " in log), log
        assert git(repo, "show", f"lane-l{n}:seen{n}.txt") == "dep 1"
        files = git(repo, "ls-tree", "-r", "--name-only", f"lane-l{n}").splitlines()
        assert "deps/pkg/f1.txt" not in files
        # setup's own file is not the lane's, unless its agent changed it
        assert ("made.txt" in files) == (n == 0)
    assert git(repo, "show", "lane-l0:made.txt") == "changed by the agent"
    # Setup ran in the pool's folder (the lanes' worktrees are the pool's, moved).
    assert sum("/.worktrees/.pool/p-" in line for line in ran_in) >= 2
    assert all("/.worktrees/.pool/p-" in line or line.endswith("/agent-l2") for line in ran_in)
    # Never more than two spares; the complete ones stay for the next run on this base.
    spare = sorted(p.name for p in (repo / ".worktrees" / ".pool").iterdir() if p.is_dir())
    assert len(spare) <= 2
    _fill(repo, 2, SETUP.format(runs=runs))
    cleaned = cli(repo, "cleanup", "--force")
    assert cleaned.code == 0, cleaned.out + cleaned.err
    assert "removed spare worktree .worktrees/.pool/p-" in cleaned.out
    assert not (repo / ".worktrees" / ".pool").exists()
    assert "/.pool/" not in git(repo, "worktree", "list")


def _fill(
    repo: Path,
    size: int,
    setup: str = "mkdir -p deps",
    share: list[str] | None = None,
    share_key: list[str] | None = None,
) -> str:
    """Make `size` spares at the base commit with the real filler; their key."""
    from orchestree.config import WorktreeConfig
    from orchestree.worktree_pool import Filler, spares

    base = git(repo, "rev-parse", "main")
    said: list[str] = []
    config = WorktreeConfig(setup=setup, pool=size, share=share or [], share_key=share_key or [])
    filler = Filler(
        repo, repo / ".worktrees", base, config,
        repo / ".orchestration" / "share", [], repo / ".orchestration" / "logs" / "pool.log",
        said.append,
    )  # fmt: skip
    filler.start()
    try:
        wait_for(lambda: len(spares(repo / ".worktrees", filler.key)) == size, 30, "spares")
    finally:
        filler.close()
    assert not said, said
    return filler.key


CLAIM = """
import json, sys
from pathlib import Path
from orchestree import worktree_pool
root, folder, key, n, start, go = sys.argv[1:]
while not Path(go).exists():
    pass
path = Path(root) / ".worktrees" / f"agent-c{n}"
got = worktree_pool.claim({"folder": folder, "key": key}, Path(root), path, f"lane-c{n}", start)
print(json.dumps(got))
"""


def test_a_spare_is_never_handed_to_two_lanes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, BASE_CONFIG)
    want = _fill(repo, 3)
    base = git(repo, "rev-parse", "main")
    go = tmp_path / "go"
    folder = str(repo / ".worktrees" / ".pool")
    claimers = [
        subprocess.Popen(
            [PYTHON, "-c", CLAIM, str(repo), folder, want, str(n), base, str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    time.sleep(0.5)
    go.touch()  # all at once
    got = [json.loads(p.communicate(timeout=60)[0]) for p in claimers]
    names = [g for g in got if g is not None]
    assert len(names) == 3, got
    assert len(set(names)) == 3, got
    for n, name in enumerate(got):
        path = repo / ".worktrees" / f"agent-c{n}"
        if name is None:
            assert not path.exists()
            continue
        assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == f"lane-c{n}"
        assert (path / "deps").is_dir()
    listed = git(repo, "worktree", "list", "--porcelain")
    assert listed.count("/.worktrees/agent-c") == 3
    assert "/.pool/" not in listed


def test_a_lane_starting_elsewhere_than_the_base_gets_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = pool_repo(tmp_path, monkeypatch, SETUP.format(runs=runs))
    _fill(repo, 2, SETUP.format(runs=runs))
    add_lanes(repo, {
        "first": {"tasks": ["echo from first > first.txt", "rm README.md"]},
        "second": {"tasks": ["cat first.txt > seen.txt", "test ! -e README.md"],
                   "depends_on": ["first"]},
    })  # fmt: skip
    result = cli(repo, "execute")
    assert result.code == 0, result.out + result.err
    log = (repo / ".orchestration" / "logs" / "agent-second.log").read_text()
    assert "orchestree: worktree from the pool (p-" in log
    assert git(repo, "show", "lane-second:seen.txt") == "from first"
    assert (repo / ".worktrees" / "agent-second" / "deps" / "pkg" / "f1.txt").is_file()


def test_a_pool_setup_that_fails_is_discarded_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It fails in the pool's folder only: the lane, which then runs it itself, does not.
    fail = "{ echo cannot resolve left-pad >&2; exit 7; }"
    setup = f'test -n \\"${{PWD##*/.pool/*}}\\" || {fail}; mkdir deps'
    repo = pool_repo(tmp_path, monkeypatch, setup)
    pool_log = repo / ".orchestration" / "logs" / "pool.log"
    wait = f"until grep -q left-pad {pool_log}; do sleep 0.1; done; sleep 0.5; test -d deps"
    add_lanes(repo, {"one": {"tasks": [f"timeout 60 sh -c '{wait}'"]}})
    result = cli(repo, "execute")
    assert result.code == 0, result.out + result.err
    said = [line for line in result.out.splitlines() if line.startswith("! pool:")]
    # Each entry built is named; the filler builds no more after a failure.
    assert 1 <= len(said) <= 2, result.out
    for line in said:
        assert "discarded: worktree setup failed (exit 7); see .orchestration/logs/pool.log" in line
    assert "cannot resolve left-pad" in pool_log.read_text()
    log = (repo / ".orchestration" / "logs" / "agent-one.log").read_text()
    assert "orchestree: worktree setup: " in log  # the lane ran setup itself
    assert not [p for p in (repo / ".worktrees" / ".pool").glob("p-*")]
    assert "/.pool/" not in git(repo, "worktree", "list")


def test_share_and_pool_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "setup.runs"
    repo = pool_repo(tmp_path, monkeypatch, SETUP.format(runs=runs), 2, 'share = ["deps"]\n')
    _fill(repo, 2, SETUP.format(runs=runs), ["deps"])
    add_lanes(repo, {f"s{n}": {"tasks": ["cat deps/pkg/f2.txt > seen.txt"]} for n in range(2)})
    result = cli(repo, "execute", "--max-parallel", "1")
    assert result.code == 0, result.out + result.err
    assert len(runs.read_text().splitlines()) == 1  # once, in share's template
    for n in range(2):
        log = (repo / ".orchestration" / "logs" / f"agent-s{n}.log").read_text()
        assert "orchestree: worktree from the pool (p-" in log
        assert git(repo, "show", f"lane-s{n}:seen.txt") == "dep 2"
    assert "worktree share: deps (" in (repo / ".orchestration" / "logs" / "pool.log").read_text()


@pytest.mark.parametrize("keyed", [True, False])
def test_with_share_key_spares_outlive_a_merge_and_end_on_the_new_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    runs = tmp_path / "setup.runs"
    share_key = [".gitignore"] if keyed else []
    extra = 'share = ["deps"]\n' + ('share_key = [".gitignore"]\n' if keyed else "")
    repo = pool_repo(tmp_path, monkeypatch, SETUP.format(runs=runs), 2, extra)
    _fill(repo, 2, SETUP.format(runs=runs), ["deps"], share_key)
    made = {p.name for p in (repo / ".worktrees" / ".pool").iterdir() if p.is_dir()}
    (repo / "notes.txt").write_text("after the spares\n")  # a merge moves the base
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "notes")
    add_lanes(repo, {"s": {"tasks": ["cat notes.txt deps/pkg/f2.txt > seen.txt"]}})
    result = cli(repo, "execute", "--max-parallel", "1")
    assert result.code == 0, result.out + result.err
    # Either way the lane is on the new base commit, with its file and share's folder.
    assert git(repo, "show", "lane-s:seen.txt") == "after the spares\ndep 2"
    assert git(repo, "rev-parse", "lane-s^") == git(repo, "rev-parse", "main")
    log = (repo / ".orchestration" / "logs" / "agent-s.log").read_text()
    if keyed:  # a spare made on the old commit served; setup ran once, for both
        assert any(f"orchestree: worktree from the pool ({name})" in log for name in made), log
        assert "(unusable)" not in result.out
        assert len(runs.read_text().splitlines()) == 1
    else:  # the old commit's spares are no use: removed, and the template made again
        for name in made:
            assert f"pool: removed .worktrees/.pool/{name} (unusable)" in result.out
        assert len(runs.read_text().splitlines()) == 2


@pytest.mark.parametrize("value", ["-1", "65", '"2"'])
def test_a_bad_pool_size_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch, BASE_CONFIG)
    (repo / "orchestree.toml").write_text(BASE_CONFIG + f"[worktree]\npool = {value}\n")
    result = cli(repo, "execute")
    assert result.code == 2
    assert "worktree.pool" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_claim_cut_short_by_a_kill_leaves_nothing_the_resume_trips_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestree.models import Tracker
    from orchestree.repo import open_repo

    repo = pool_repo(tmp_path, monkeypatch, "mkdir -p deps", 1)
    want = _fill(repo, 2, "mkdir -p deps")
    add_lanes(repo, {"cut": {"tasks": ["echo done > done.txt"], "max_attempts": 2}})
    base = git(repo, "rev-parse", "main")
    pool = repo / ".worktrees" / ".pool"
    # What a supervisor SIGKILLed between the lane branch and the move leaves: an entry
    # on the lane's branch, its `.ready` gone; and a half-built entry of a killed filler.
    cut, half = sorted(p for p in pool.iterdir() if p.is_dir())
    (pool / f"{cut.name}.ready").unlink()
    git(cut, "checkout", "-q", "-b", "lane-cut")
    (pool / f"{half.name}.ready").unlink()
    store = open_repo(repo).store

    def running(t: Tracker) -> None:
        lane = t.lanes["cut"]
        lane.status, lane.attempts, lane.start_commit = "running", 1, base

    store.update(running, "test-status", lane="cut")
    result = cli(repo, "execute")
    assert result.code == 0, result.out + result.err
    assert f"… pool: removed .worktrees/.pool/{cut.name} (unusable)" in result.out
    assert f"… pool: removed .worktrees/.pool/{half.name} (unusable)" in result.out
    assert tracker(repo)["lanes"]["cut"]["status"] == "completed"
    assert git(repo, "show", "lane-cut:done.txt") == "done"
    assert want  # the spares that stayed were this run's key


def test_an_orchestrator_killed_while_the_pool_fills_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = tmp_path / "setup.started"
    setup = f"touch {started}; sleep 1.5; mkdir -p deps"
    repo = pool_repo(tmp_path, monkeypatch, setup, 2)
    # A lane claimed but not yet recorded as started is retried (interrupted).
    lanes = {"tasks": ["echo ok > ok.txt"], "max_attempts": 2}
    add_lanes(repo, {f"k{n}": dict(lanes) for n in range(3)})
    first = spawn(repo, "execute")
    wait_for(started.exists, 30, "the pool's setup")
    first.kill()  # SIGKILL: its filler's threads die with it; the setups run on
    first.communicate()
    result = cli(repo, "execute")
    assert result.code == 0, result.out + result.err
    assert set(statuses(repo).values()) == {"completed"}
    for n in range(3):
        assert git(repo, "show", f"lane-k{n}:ok.txt") == "ok"
        log = (repo / ".orchestration" / "logs" / f"agent-k{n}.log").read_text()
        if "orchestree: worktree from the pool (p-" in log:
            assert (repo / ".worktrees" / f"agent-k{n}" / "deps").is_dir()
    time.sleep(2)  # orphaned setups of the killed run end
    cleaned = cli(repo, "cleanup", "--force")
    assert cleaned.code == 0, cleaned.out + cleaned.err
    assert not (repo / ".worktrees" / ".pool").exists()
    assert "/.pool/" not in git(repo, "worktree", "list")


def test_doctor_says_the_dask_executor_ignores_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = BASE_CONFIG + '[executor]\nkind = "dask"\n[worktree]\npool = 2\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    result = cli(repo, "doctor")
    rows = [line for line in result.out.splitlines() if "[worktree] pool" in line]
    assert len(rows) == 1, result.out
    assert "ignored by [executor] dask" in rows[0]


def test_a_claim_that_cannot_move_its_spare_leaves_no_branch_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestree.worktree_pool import claim

    repo = make_repo(tmp_path, monkeypatch, BASE_CONFIG)
    want = _fill(repo, 1)
    taken = repo / ".worktrees" / "agent-x"
    taken.mkdir()
    (taken / "mine.txt").write_text("not git's\n", encoding="utf-8")  # git refuses the move
    pool = {"folder": str(repo / ".worktrees" / ".pool"), "key": want}
    base = git(repo, "rev-parse", "main")
    assert claim(pool, repo, taken, "lane-x", base) is None
    assert git(repo, "branch", "--list", "lane-x") == ""  # the lane can make its own
    assert (taken / "mine.txt").read_text(encoding="utf-8") == "not git's\n"
    assert "/.pool/" not in git(repo, "worktree", "list")
