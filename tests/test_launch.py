"""One lane's attempt: its start point, its worktree and how it is prepared."""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import (
    BASE_CONFIG,
    add_lanes,
    agent_config,
    cli,
    git,
    make_repo,
    statuses,
    tracker,
    write_script,
)
from orchestree.executors import launch
from orchestree.merge import startpoint
from orchestree.repo import open_repo


def _commit_on(repo: Path, branch: str, start: str, files: dict[str, str]) -> str:
    git(repo, "switch", "-q", "-c", branch, start)
    for rel, text in files.items():
        (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"work on {branch}")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "-q", "main")
    return head


def test_start_point_merges_dependency_branches_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files={"shared.txt": "base\n"})
    base = git(repo, "rev-parse", "main")
    a = _commit_on(repo, "a", base, {"a.txt": "a\n"})
    b = _commit_on(repo, "b", base, {"b.txt": "b\n"})
    status_before = git(repo, "status", "--porcelain")
    # No dependency: the base itself. One dependency ahead of the base: its head.
    assert startpoint.start_point(repo, base, []).commit == base
    assert startpoint.start_point(repo, base, [("a", a)]).commit == a
    # Two: a merge commit whose tree holds both, made without touching any worktree.
    merged = startpoint.start_point(repo, base, [("a", a), ("b", b)])
    assert merged.conflicts == []
    assert merged.commit is not None
    assert git(repo, "log", "-1", "--format=%P", merged.commit).split() == [a, b]
    names = git(repo, "ls-tree", "--name-only", merged.commit).split()
    assert {"a.txt", "b.txt", "shared.txt"} <= set(names)
    assert git(repo, "status", "--porcelain") == status_before
    assert git(repo, "rev-parse", "main") == base


def test_start_point_names_the_conflicting_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files={"shared.txt": "base\n", "other.txt": "o\n"})
    base = git(repo, "rev-parse", "main")
    left = _commit_on(repo, "left", base, {"shared.txt": "left\n", "other.txt": "l\n"})
    right = _commit_on(repo, "right", base, {"shared.txt": "right\n", "other.txt": "r\n"})
    point = startpoint.start_point(repo, base, [("left", left), ("right", right)])
    assert point.commit is None
    assert point.conflicts == ["other.txt", "shared.txt"]


def test_ownership_accepts_our_own_branch_and_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"mine": {"tasks": ["echo 1 > one.txt"]}})
    state = open_repo(repo)
    lane = state.store.read().lanes["mine"]
    assert launch.ownership_problem(state, "mine", lane) is None
    assert cli(repo, "execute").code == 0
    lane = state.store.read().lanes["mine"]
    # After a run, the worktree and branch are ours: a retry may reuse them.
    assert launch.ownership_problem(state, "mine", lane) is None
    assert lane.start_commit == git(repo, "rev-parse", "main")


def test_worktreeinclude_copies_ignored_files_into_new_worktrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(
        tmp_path,
        monkeypatch,
        files={
            ".gitignore": ".env\n*.local\nbuild/\n",
            ".worktreeinclude": "# secrets the agents need\n.env\nconfig/*.local\n",
        },
    )
    (repo / ".env").write_text("API_KEY=secret\n", encoding="utf-8")
    (repo / "config").mkdir()
    (repo / "config" / "db.local").write_text("db=dev\n", encoding="utf-8")
    (repo / "build").mkdir()
    (repo / "build" / "big.bin").write_text("not wanted\n", encoding="utf-8")
    add_lanes(repo, {"uses-env": {"tasks": ["cat .env config/db.local > seen.txt"]}})
    assert cli(repo, "execute").code == 0
    wt = repo / ".worktrees" / "agent-uses-env"
    assert (wt / ".env").read_text() == "API_KEY=secret\n"
    assert (wt / "config" / "db.local").read_text() == "db=dev\n"
    assert not (wt / "build").exists()
    assert git(repo, "show", "lane-uses-env:seen.txt").split() == ["API_KEY=secret", "db=dev"]
    # Still ignored: the copies never reach the lane's commits.
    files = git(repo, "ls-tree", "-r", "--name-only", "lane-uses-env").split()
    assert ".env" not in files
    assert "config/db.local" not in files


def test_setup_runs_once_in_each_new_worktree_before_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setups = tmp_path / "setups.txt"
    config = (
        BASE_CONFIG
        + f'\n[worktree]\nsetup = "echo $ORCHESTREE_LANE >> {setups} && touch .deps-installed"\n'
    )
    repo = make_repo(tmp_path, monkeypatch, config=config, files={".gitignore": ".deps-*\n"})
    add_lanes(
        repo,
        {
            "x": {"tasks": ["test -f .deps-installed && echo ok > x.txt"]},
            "y": {"tasks": ["test -f .deps-installed && exit 1"], "max_attempts": 2},
        },
    )
    assert cli(repo, "execute").code == 1
    assert statuses(repo) == {"x": "completed", "y": "failed"}
    # Lane y's second attempt reused its worktree: setup ran once per lane, not per attempt.
    assert sorted(setups.read_text().split()) == ["x", "y"]
    assert git(repo, "show", "lane-x:x.txt") == "ok"


def test_only_what_the_agent_changed_is_committed_not_what_setup_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup makes an untracked file, edits a tracked one and deletes another: none of it
    # is the lane's work. A setup file the agent then edits is the agent's work.
    setup = "echo generated > made.txt && echo local >> tracked.txt && rm gone.txt"
    config = BASE_CONFIG + f'\n[worktree]\nsetup = "{setup}"\n'
    files = {"tracked.txt": "base\n", "gone.txt": "here\n"}
    repo = make_repo(tmp_path, monkeypatch, config=config, files=files)
    add_lanes(
        repo,
        {
            "idle": {"tasks": ["test -f made.txt"]},
            "busy": {"tasks": ["echo mine > mine.txt && echo agent >> made.txt"]},
        },
    )
    done = cli(repo, "execute")
    assert done.code == 0, done.err
    idle = next(line for line in done.out.splitlines() if line.startswith("✓ idle: "))
    assert idle.endswith("changed nothing")
    lanes = tracker(repo)["lanes"]
    base = git(repo, "rev-parse", "main")
    assert git(repo, "rev-parse", "lane-idle") == base
    assert lanes["idle"]["head_commit"] in (None, base)
    changed = git(repo, "diff", "--name-only", base, "lane-busy").split()
    assert changed == ["made.txt", "mine.txt"]
    assert git(repo, "show", "lane-busy:made.txt") == "generated\nagent"
    # The second attempt of a lane reuses its worktree: setup's output stays out too.
    assert cli(repo, "add-lane", "again", '{"tasks": ["false"], "max_attempts": 2}').code == 0
    assert cli(repo, "execute").code == 1
    assert git(repo, "rev-parse", "lane-again") == base


def test_a_failing_setup_fails_the_attempt_with_its_output_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "agent-ran"
    config = BASE_CONFIG + '\n[worktree]\nsetup = "echo npm ERR! missing lockfile; exit 9"\n'
    repo = make_repo(tmp_path, monkeypatch, config=config)
    add_lanes(repo, {"needs-deps": {"tasks": [f"touch {marker}"]}})
    result = cli(repo, "execute")
    assert result.code == 1
    lane = tracker(repo)["lanes"]["needs-deps"]
    assert lane["status"] == "failed"
    assert lane["error"] == "worktree setup failed (exit 9); see the log"
    assert not marker.exists()
    log = cli(repo, "logs", "needs-deps").out
    assert "npm ERR! missing lockfile" in log
    assert "worktree setup failed (exit 9)" in log


def test_lanes_running_side_by_side_get_distinct_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = tmp_path / "ports"
    ports.mkdir()
    script = write_script(
        tmp_path / "port.py",
        f"""
Path({str(ports)!r}, sys.argv[1]).write_text(os.environ["ORCHESTREE_PORT"])
time.sleep(0.4)
""",
    )
    config = agent_config("port", script, extra="\n[worktree]\nports = [31000, 31009]\n")
    repo = make_repo(tmp_path, monkeypatch, config=config)
    add_lanes(repo, {f"srv{i}": {"agent": "port"} for i in range(4)})
    assert cli(repo, "execute", "--max-parallel", "4").code == 0
    seen = [int(p.read_text()) for p in ports.iterdir()]
    assert len(seen) == 4
    assert len(set(seen)) == 4
    assert all(31000 <= port <= 31009 for port in seen)
    recorded = {lane["port"] for lane in tracker(repo)["lanes"].values()}
    assert recorded == set(seen)


def test_worktree_root_places_worktrees_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An absolute path inside the repository, to an untracked nested folder (issue 20:
    # a root outside the repository is refused, see tests/test_hostile_worktree_root.py).
    elsewhere = tmp_path / "repo" / "build" / "lane-checkouts"
    config = BASE_CONFIG + f'\n[worktree]\nroot = "{elsewhere}"\n'
    repo = make_repo(tmp_path, monkeypatch, config=config)
    add_lanes(
        repo,
        {
            "far": {"tasks": ["pwd > where.txt"]},
            "next": {"tasks": ["cat where.txt > copy.txt"], "depends_on": ["far"]},
        },
    )
    assert cli(repo, "execute").code == 0
    assert Path(git(repo, "show", "lane-far:where.txt")) == elsewhere / "agent-far"
    assert (elsewhere / "agent-next" / "copy.txt").exists()
    assert not (repo / ".worktrees").exists()
    state = tracker(repo)
    assert state["agents"]["agent-far"]["worktree"] == "build/lane-checkouts/agent-far"
    assert git(repo, "status", "--porcelain") == ""


def test_a_lane_prompt_names_its_tasks_and_the_tracker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = write_script(
        tmp_path / "echo_prompt.py",
        "Path('prompt.txt').write_text(Path(os.environ['ORCHESTREE_PROMPT_FILE']).read_text())\n",
    )
    repo = make_repo(tmp_path, monkeypatch, agent_config("reader", script))
    add_lanes(repo, {"docs": {"agent": "reader", "tasks": ["Write the README", "Add examples"]}})
    assert cli(repo, "execute").code == 0
    prompt = git(repo, "show", "lane-docs:prompt.txt")
    assert "1. Write the README" in prompt
    assert "2. Add examples" in prompt
    assert str(repo / ".orchestration" / "tracker.json") in prompt
    assert "docs/_generated/docs/" in prompt
    assert "lane-docs" in prompt


def test_a_repository_that_tracks_its_own_access_tracker_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files={"access_tracker.py": "# the project's own\n"})
    add_lanes(repo, {"own-helper": {"tasks": ['cp "$ORCHESTREE_PROMPT_FILE" prompt.txt']}})
    assert cli(repo, "execute").code == 0
    wt = repo / ".worktrees" / "agent-own-helper"
    assert (wt / "access_tracker.py").read_text() == "# the project's own\n"
    assert git(repo, "show", "lane-own-helper:access_tracker.py") == "# the project's own"
    prompt = git(repo, "show", "lane-own-helper:prompt.txt")
    assert f"python3 {repo / '.orchestration' / 'access_tracker.py'} " in prompt
