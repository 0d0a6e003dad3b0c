"""The lane commands (execute, exec-lane, retry, cancel, logs) and their refusals."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from exec_helpers import (
    BASE_CONFIG,
    ORCHESTREE,
    add_lanes,
    agent_config,
    cli,
    count_runs,
    counting_agent,
    git,
    make_repo,
    process_alive,
    spawn,
    statuses,
    tracker,
    wait_for,
)


def _snapshot(repo: Path) -> tuple[bytes, str, str]:
    """Everything a refused command must leave as it was."""
    return (
        (repo / ".orchestration" / "tracker.json").read_bytes(),
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        git(repo, "worktree", "list", "--porcelain"),
    )


def _refused(repo: Path, *args: str, code: int = 2) -> str:
    before = _snapshot(repo)
    result = cli(repo, *args)
    assert result.code == code, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("orchestree: ")
    assert "Traceback" not in result.err
    assert _snapshot(repo) == before
    return lines[0]


@pytest.mark.parametrize("command", ["exec-lane", "retry", "cancel", "logs"])
def test_an_unknown_lane_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"known": {"tasks": ["true"]}})
    line = _refused(repo, command, "nope")
    assert "no lane 'nope'" in line
    assert "orchestree status" in line


def test_a_missing_agent_program_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = BASE_CONFIG + '\n[agents.ghostbot]\ncommand = ["ghostbot-not-installed", "{prompt}"]\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(repo, {"fine": {"tasks": ["true"]}, "bot": {"agent": "ghostbot"}})
    line = _refused(repo, "execute", code=3)  # the environment lacks a program
    assert "agent 'ghostbot'" in line
    assert "ghostbot-not-installed" in line
    assert "orchestree.toml" in line  # says how to configure it
    assert not (repo / ".worktrees").exists()
    assert not (repo / ".orchestration" / "logs" / "agent-fine.log").exists()


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[defaults]\nagent = "shell"\nmax_paralel = 2\n', "unknown key 'defaults.max_paralel'"),
        ('[defaults]\nagent = "shell"\nmax_parallel = "four"\n', "'defaults.max_parallel'"),
        (
            '[defaults]\nagent = "shell"\n[agents.bot]\ncommand = "bot --yes"\n',
            "'agents.bot.command'",
        ),
        ("[defaults\nagent = 1\n", "not valid TOML"),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, expected: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"one": {"tasks": ["true"]}})
    (repo / "orchestree.toml").write_text(toml, encoding="utf-8")
    for args in (["execute"], ["exec-lane", "one"]):
        line = _refused(repo, *args)
        assert expected in line
        assert str(repo / "orchestree.toml") in line
    assert statuses(repo) == {"one": "pending"}


def test_a_worktree_path_occupied_by_something_else_is_refused_and_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"squat": {"tasks": ["echo x > x.txt"]}})
    occupied = repo / ".worktrees" / "agent-squat"
    occupied.mkdir(parents=True)
    (occupied / "precious.txt").write_text("mine", encoding="utf-8")
    line = _refused(repo, "execute")
    assert str(occupied) in line
    assert "not a worktree of this repository" in line
    assert [p.name for p in occupied.iterdir()] == ["precious.txt"]
    assert (occupied / "precious.txt").read_text() == "mine"
    assert git(repo, "branch", "--list", "lane-squat") == ""


def test_an_existing_lane_branch_with_unrelated_commits_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"taken": {"tasks": ["echo x > x.txt"]}})
    git(repo, "switch", "-q", "-c", "lane-taken")
    (repo / "someone.txt").write_text("their work", encoding="utf-8")
    git(repo, "add", "someone.txt")
    git(repo, "commit", "-q", "-m", "someone else's work")
    git(repo, "switch", "-q", "main")
    head = git(repo, "rev-parse", "lane-taken")
    for args in (["execute"], ["exec-lane", "taken"]):
        line = _refused(repo, *args)
        assert "branch lane-taken already exists" in line
        assert "never overwritten" in line
    assert git(repo, "rev-parse", "lane-taken") == head


def test_exec_lane_runs_only_that_lane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"one": {"tasks": ["echo 1 > one.txt"]}, "two": {"tasks": ["true"]}})
    result = cli(repo, "exec-lane", "one")
    assert result.code == 0, result.err
    assert statuses(repo) == {"one": "completed", "two": "pending"}
    assert git(repo, "show", "lane-one:one.txt") == "1"


def test_exec_lane_refuses_a_lane_whose_dependencies_have_not_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"dep": {"tasks": ["true"]}, "top": {"tasks": ["true"], "depends_on": ["dep"]}})
    line = _refused(repo, "exec-lane", "top")
    assert "'dep'" in line
    assert "pending" in line


def test_logs_prints_the_agents_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"talk": {"tasks": ["echo hello from the agent; echo oops >&2"]}})
    assert "no log yet" in cli(repo, "logs", "talk").out
    assert cli(repo, "execute").code == 0
    result = cli(repo, "logs", "talk")
    assert result.code == 0
    assert "hello from the agent" in result.out
    assert "oops" in result.out
    assert "lane talk attempt 1" in result.out


def test_logs_follow_streams_until_the_lane_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"stream": {"tasks": ["for i in 1 2 3; do echo tick $i; sleep 0.3; done"]}})
    run = spawn(repo, "execute")
    wait_for(lambda: statuses(repo)["stream"] == "running", what="the lane to start")
    follow = spawn(repo, "logs", "stream", "--follow")
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert [line for line in out.splitlines() if line.startswith("tick")] == [
        "tick 1",
        "tick 2",
        "tick 3",
    ]
    assert statuses(repo)["stream"] == "completed"
    run.communicate(timeout=30)
    assert run.returncode == 0


def test_cancel_stops_a_running_lane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = tmp_path / "counts"
    script = counting_agent(counts, sleep_s=60)
    repo = make_repo(tmp_path, monkeypatch, agent_config("slow", script))
    add_lanes(
        repo, {"long": {"agent": "slow"}, "after": {"tasks": ["true"], "depends_on": ["long"]}}
    )
    run = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "long") == 1, what="the lane to start")
    agent_pid = int((counts / "long.runs").read_text().split()[0])
    started = time.monotonic()
    result = cli(repo, "cancel", "long")
    assert result.code == 0, result.err
    assert "stopping its agent" in result.out
    _, err = run.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert run.returncode == 1, err
    assert statuses(repo) == {"long": "cancelled", "after": "blocked"}
    assert not process_alive(agent_pid)
    assert (repo / ".worktrees" / "agent-long").is_dir()
    # Cancelling a lane that has finished is refused.
    assert "only a" in _refused(repo, "cancel", "long")


def test_cancel_of_a_pending_lane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"later": {"tasks": ["true"]}})
    assert cli(repo, "cancel", "later").code == 0
    assert statuses(repo) == {"later": "cancelled"}
    assert cli(repo, "execute").code == 1
    assert not (repo / ".worktrees" / "agent-later").exists()


def test_retry_runs_a_failed_lane_again_and_unblocks_its_dependents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = tmp_path / "counts"
    script = counting_agent(counts, fail_first=1)
    repo = make_repo(tmp_path, monkeypatch, agent_config("count", script))
    add_lanes(
        repo,
        {
            "base": {"agent": "count"},
            "mid": {"tasks": ["cat base.txt > mid.txt"], "depends_on": ["base"]},
            "top": {"tasks": ["cat mid.txt > top.txt"], "depends_on": ["mid"]},
        },
    )
    assert cli(repo, "execute").code == 1
    assert statuses(repo) == {"base": "failed", "mid": "blocked", "top": "blocked"}
    result = cli(repo, "retry", "base")
    assert result.code == 0, result.err
    assert "unblocked: mid, top" in result.out
    assert statuses(repo) == {"base": "completed", "mid": "pending", "top": "pending"}
    assert tracker(repo)["lanes"]["base"]["attempts"] == 2
    assert count_runs(counts, "base") == 2
    assert cli(repo, "execute").code == 0
    assert git(repo, "show", "lane-top:top.txt") == "lane base run 2"
    # Retrying a completed lane is refused.
    assert "only a" in _refused(repo, "retry", "base")


def test_execute_through_the_installed_program_exits_1_when_a_lane_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"ok": {"tasks": ["true"]}, "bad": {"tasks": ["false"]}})
    proc = subprocess.run(
        [ORCHESTREE, "execute", "--repo", str(repo)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "2 lanes: 1 changed nothing, 1 failed" in proc.stdout  # `true` changes no file
    assert proc.stderr == ""
