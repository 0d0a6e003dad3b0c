"""`orchestree execute` end to end: real repositories, real agent processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from exec_helpers import (
    PYTHON,
    add_lanes,
    agent_config,
    cli,
    count_runs,
    counting_agent,
    git,
    make_repo,
    process_alive,
    recorded_pid,
    spawn,
    statuses,
    tracker,
    wait_for,
    write_script,
)
from orchestree import procs


def test_agent_commits_its_own_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(
        repo,
        {
            "own": {
                "tasks": [
                    "mkdir -p docs/_generated/own && echo report > docs/_generated/own/r.md",
                    "git add -A && git commit -q -m 'agent: my own commit'",
                ]
            }
        },
    )
    result = cli(repo, "execute")
    assert result.code == 0, result.err
    lane = tracker(repo)["lanes"]["own"]
    assert lane["status"] == "completed"
    assert git(repo, "log", "-1", "--format=%s", "lane-own") == "agent: my own commit"
    assert lane["head_commit"] == git(repo, "rev-parse", "lane-own")
    assert lane["results"] == ["docs/_generated/own/r.md"]
    assert lane["changed_files"] == ["docs/_generated/own/r.md"]
    # The base branch is untouched; the worktree is on the lane branch.
    assert git(repo, "log", "-1", "--format=%s", "main") == "initial"
    assert git(repo / ".worktrees" / "agent-own", "branch", "--show-current") == "lane-own"
    assert tracker(repo)["agents"]["agent-own"]["status"] == "completed"


def test_work_left_uncommitted_lands_on_the_lane_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"lazy": {"tasks": ["echo new > new.txt && echo more >> README.md"]}})
    assert cli(repo, "execute").code == 0
    assert git(repo, "show", "lane-lazy:new.txt") == "new"
    assert "more" in git(repo, "show", "lane-lazy:README.md")
    assert "left uncommitted" in git(repo, "log", "-1", "--format=%s", "lane-lazy")
    # Nothing is left behind uncommitted, and the helper never lands in a commit.
    wt = repo / ".worktrees" / "agent-lazy"
    assert git(wt, "status", "--porcelain") == ""
    assert (wt / "access_tracker.py").exists()
    assert "access_tracker.py" not in git(repo, "ls-tree", "-r", "--name-only", "lane-lazy")
    assert sorted(tracker(repo)["lanes"]["lazy"]["changed_files"]) == ["README.md", "new.txt"]


def test_a_failing_lane_blocks_its_dependents_but_not_independent_lanes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(
        repo,
        {
            "bad": {"tasks": ["echo about to fail; exit 3"]},
            "child": {"tasks": ["echo c > c.txt"], "depends_on": ["bad"]},
            "grandchild": {"tasks": ["echo g > g.txt"], "depends_on": ["child"]},
            "free": {"tasks": ["echo f > f.txt"]},
        },
    )
    result = cli(repo, "execute")
    assert result.code == 1
    assert statuses(repo) == {
        "bad": "failed",
        "child": "blocked",
        "grandchild": "blocked",
        "free": "completed",
    }
    lanes = tracker(repo)["lanes"]
    assert "exit code 3" in lanes["bad"]["error"]
    assert "echo about to fail" in lanes["bad"]["error"]  # the failing task is named
    assert lanes["child"]["error"] == "dependency 'bad' failed"
    assert tracker(repo)["agents"]["agent-bad"]["exit_code"] == 3
    assert "agent-child" not in tracker(repo)["agents"]
    assert git(repo, "show", "lane-free:f.txt") == "f"
    assert "about to fail" in (repo / ".orchestration/logs/agent-bad.log").read_text()
    assert tracker(repo)["status"] == "failed"


def test_a_hanging_agent_that_ignores_sigterm_is_ended_with_its_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    script = write_script(
        tmp_path / "hang.py",
        f"""
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "120"])
Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
Path("partial.txt").write_text("half done")
while True:
    time.sleep(1)
""",
    )
    repo = make_repo(tmp_path, monkeypatch, agent_config("hang", script))
    add_lanes(repo, {"stuck": {"agent": "hang", "timeout_s": 1}, "other": {"tasks": ["true"]}})
    result = cli(repo, "execute")
    assert result.code == 1
    lane = tracker(repo)["lanes"]["stuck"]
    assert lane["status"] == "failed"
    assert lane["error"] == "timed out after 1 s; the agent's tree was ended"
    for pid in map(int, pids.read_text().split()):
        assert not process_alive(pid), f"process {pid} of the agent survived"
    # What it did before the timeout is kept on its branch.
    assert git(repo, "show", "lane-stuck:partial.txt") == "half done"
    assert statuses(repo)["other"] == "completed"


def test_a_setsid_daemon_started_by_an_agent_does_not_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(
        repo,
        {"serve": {"tasks": [f"setsid sleep 300 >/dev/null 2>&1 & echo $! > {pids}; exit 0"]}},
    )
    assert cli(repo, "execute").code == 0
    (daemon,) = map(int, pids.read_text().split())
    assert not process_alive(daemon)
    assert statuses(repo) == {"serve": "completed"}


def test_progress_reported_through_access_tracker_lands_in_the_tracker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    update = json.dumps({"lanes": {"prog": {"progress": "50% complete", "data": {"files": 3}}}})
    add_lanes(
        repo,
        {
            "prog": {
                "tasks": [
                    f"python3 access_tracker.py \"$ORCHESTREE_TRACKER\" '{update}'",
                    'python3 access_tracker.py "$ORCHESTREE_TRACKER" > seen.json',
                ]
            }
        },
    )
    assert cli(repo, "execute").code == 0
    lane = tracker(repo)["lanes"]["prog"]
    assert lane["progress"] == "50% complete"
    assert lane["data"] == {"files": 3}
    seen = json.loads(git(repo, "show", "lane-prog:seen.json"))
    assert seen["lanes"]["prog"]["status"] == "running"
    events = (repo / ".orchestration/events.jsonl").read_text().splitlines()
    assert any(json.loads(e).get("actor") == "agent-prog" for e in events)


def test_the_agent_environment_names_its_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"envy": {"tasks": ["env | grep ^ORCHESTREE_ | sort > env.txt"]}})
    assert cli(repo, "execute").code == 0
    env = dict(line.split("=", 1) for line in git(repo, "show", "lane-envy:env.txt").splitlines())
    wt = repo / ".worktrees" / "agent-envy"
    assert env["ORCHESTREE_LANE"] == "envy"
    assert env["ORCHESTREE_BRANCH"] == "lane-envy"
    assert env["ORCHESTREE_AGENT"] == "agent-envy"
    assert Path(env["ORCHESTREE_WORKTREE"]) == wt
    assert Path(env["ORCHESTREE_TRACKER"]) == repo / ".orchestration/tracker.json"
    assert env["ORCHESTREE_RESULTS_DIR"] == "docs/_generated/envy"
    assert "envy" in Path(env["ORCHESTREE_PROMPT_FILE"]).read_text()
    assert 20000 <= int(env["ORCHESTREE_PORT"]) <= 20999


def test_a_dependent_lane_starts_from_its_dependencies_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(
        repo,
        {
            "api": {"tasks": ["echo api > api.txt && git add -A && git commit -qm api"]},
            "db": {"tasks": ["echo db > db.txt"]},
            "app": {
                "tasks": ["cat api.txt db.txt > seen.txt"],
                "depends_on": ["api", "db"],
            },
        },
    )
    assert cli(repo, "execute").code == 0
    assert git(repo, "show", "lane-app:seen.txt").split() == ["api", "db"]
    for dep in ("api", "db"):  # raises unless lane-<dep> is an ancestor of lane-app
        git(repo, "merge-base", "--is-ancestor", f"lane-{dep}", "lane-app")


def test_conflicting_dependencies_block_the_lane_naming_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files={"shared.txt": "base\n"})
    add_lanes(
        repo,
        {
            "left": {"tasks": ["echo left > shared.txt"]},
            "right": {"tasks": ["echo right > shared.txt"]},
            "both": {"tasks": ["true"], "depends_on": ["left", "right"]},
        },
    )
    assert cli(repo, "execute").code == 1
    lanes = tracker(repo)["lanes"]
    assert statuses(repo) == {"left": "completed", "right": "completed", "both": "blocked"}
    assert lanes["both"]["error"] == "its dependencies' branches conflict in: shared.txt"
    assert not (repo / ".worktrees" / "agent-both").exists()
    assert git(repo, "branch", "--list", "lane-both") == ""


def test_a_failed_attempt_is_retried_up_to_max_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = tmp_path / "counts"
    script = counting_agent(counts, fail_first=1)
    repo = make_repo(tmp_path, monkeypatch, agent_config("count", script))
    add_lanes(
        repo,
        {
            "flaky": {"agent": "count", "max_attempts": 2},
            "doomed": {"tasks": ["exit 1"], "max_attempts": 3},
            "after": {"tasks": ["cat flaky.txt > after.txt"], "depends_on": ["flaky"]},
        },
    )
    assert cli(repo, "execute").code == 1
    lanes = tracker(repo)["lanes"]
    assert count_runs(counts, "flaky") == 2
    assert lanes["flaky"]["status"] == "completed"
    assert lanes["flaky"]["attempts"] == 2
    assert git(repo, "show", "lane-after:after.txt") == "lane flaky run 2"
    assert lanes["doomed"]["status"] == "failed"
    assert lanes["doomed"]["attempts"] == 3
    log = (repo / ".orchestration/logs/agent-flaky.log").read_text()
    assert "attempt 1" in log
    assert "attempt 2" in log


def _intervals(folder: Path) -> dict[str, tuple[float, float]]:
    found = {}
    for path in folder.glob("*.span"):
        start, end = map(float, path.read_text().split())
        found[path.stem] = (start, end)
    return found


def _span_agent(folder: Path, sleep_s: float) -> Path:
    """An agent that records when it ran (start and end times) outside the repo."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_script(
        folder / "span.py",
        f"""
lane = sys.argv[1]
start = time.time()
time.sleep({sleep_s})
Path({str(folder)!r}, f"{{lane}}.span").write_text(f"{{start}} {{time.time()}}")
""",
    )


def _max_overlap(spans: dict[str, tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    now = peak = 0
    for _, delta in points:
        now += delta
        peak = max(peak, now)
    return peak


def test_max_parallel_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spans = tmp_path / "spans"
    script = _span_agent(spans, 0.3)
    repo = make_repo(tmp_path, monkeypatch, agent_config("span", script))
    add_lanes(repo, {f"l{i}": {"agent": "span"} for i in range(7)})
    assert cli(repo, "execute", "--max-parallel", "3").code == 0
    found = _intervals(spans)
    assert len(found) == 7
    assert _max_overlap(found) == 3  # honoured, and used


def test_a_lane_that_is_not_parallel_runs_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = tmp_path / "spans"
    script = _span_agent(spans, 0.3)
    repo = make_repo(tmp_path, monkeypatch, agent_config("span", script))
    lanes = {f"p{i}": {"agent": "span"} for i in range(4)}
    lanes["solo"] = {"agent": "span", "parallel": False}
    add_lanes(repo, lanes)
    assert cli(repo, "execute", "--max-parallel", "4").code == 0
    found = _intervals(spans)
    solo_start, solo_end = found.pop("solo")
    assert len(found) == 4
    for start, end in found.values():
        assert end <= solo_start or start >= solo_end


def test_lanes_start_by_priority_then_plan_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = tmp_path / "order.txt"
    repo = make_repo(tmp_path, monkeypatch)
    task = f'echo "$ORCHESTREE_LANE" >> {order}'
    add_lanes(
        repo,
        {
            "c-low": {"tasks": [task], "priority": "low"},
            "a-med": {"tasks": [task], "priority": "medium"},
            "b-high": {"tasks": [task], "priority": "high"},
            "d-med": {"tasks": [task], "priority": "medium"},
            "e-high": {"tasks": [task], "priority": "high"},
        },
    )
    assert cli(repo, "execute", "--max-parallel", "1").code == 0
    assert order.read_text().split() == ["b-high", "e-high", "a-med", "d-med", "c-low"]


def test_burst_of_40_lanes_16_at_a_time_over_several_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    for round_no in range(3):
        lanes = {f"r{round_no}-{i:02d}": {"tasks": [f"echo {i} > out.txt"]} for i in range(40)}
        expected = {lane_id: str(i) for i, lane_id in enumerate(lanes)}
        add_lanes(repo, lanes)
        result = cli(repo, "execute", "--max-parallel", "16")
        assert result.code == 0, result.err + result.out
        state = tracker(repo)
        for lane_id in lanes:
            assert state["lanes"][lane_id]["status"] == "completed"
            assert state["lanes"][lane_id]["attempts"] == 1
            assert git(repo, "show", f"lane-{lane_id}:out.txt") == expected[lane_id]
    worktrees = git(repo, "worktree", "list", "--porcelain").count("worktree ")
    assert worktrees == 1 + 120
    assert git(repo, "status", "--porcelain") == ""


# --- crashes, resume, signals --------------------------------------------------------


def _slow_counting_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleep_s: float, attempts: int = 1
) -> tuple[Path, Path]:
    counts = tmp_path / "counts"
    script = counting_agent(counts, sleep_s=sleep_s)
    quick = counting_agent(tmp_path / "quick-counts")
    config = agent_config("slow", script, defaults=f"max_attempts = {attempts}\n")
    config += f'\n[agents.quick]\ncommand = ["{PYTHON}", "{quick}", "{{lane}}"]\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    return repo, counts


def test_sigkill_of_the_orchestrator_then_execute_resumes_without_rerunning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=2.0)
    quick = tmp_path / "quick-counts"
    add_lanes(
        repo,
        {
            "fast": {"agent": "quick"},
            "slow": {"agent": "slow"},
            "later": {"agent": "quick", "depends_on": ["slow"]},
        },
    )
    proc = spawn(repo, "execute", "--max-parallel", "2")
    wait_for(lambda: statuses(repo)["fast"] == "completed", what="lane fast to complete")
    wait_for(lambda: count_runs(counts, "slow") == 1, what="lane slow to start")
    recorded_pid(repo, "slow")
    proc.kill()
    proc.communicate()
    state = tracker(repo)
    assert state["lanes"]["slow"]["status"] == "running"
    supervisor_pid = state["agents"]["agent-slow"]["pid"]
    assert process_alive(supervisor_pid, state["agents"]["agent-slow"]["pid_ticks"])
    # Execute again while the slow lane's supervisor still runs: it is adopted.
    result = cli(repo, "execute")
    assert result.code == 0, result.err + result.out
    assert f"slow: adopted from an earlier run (pid {supervisor_pid})" in result.out
    assert statuses(repo) == {"fast": "completed", "slow": "completed", "later": "completed"}
    assert count_runs(quick, "fast") == 1
    assert count_runs(counts, "slow") == 1
    assert count_runs(quick, "later") == 1
    assert tracker(repo)["lanes"]["slow"]["attempts"] == 1
    # And once more: nothing runs again.
    assert cli(repo, "execute").code == 0
    assert (count_runs(quick, "fast"), count_runs(counts, "slow")) == (1, 1)


def _unrecorded(repo: Path, agent: str) -> None:
    """The tracker as an orchestrator killed between starting the agent's supervisor
    and its lazy write of the pid leaves it: the lane running, no handle, no pid."""
    cleared = {"handle": None, "pid": None, "pid_ticks": None, "boot_id": None}
    assert cli(repo, "tracker", "update", json.dumps({"agents": {agent: cleared}})).code == 0


def _killed_before_the_pid_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sleep_s: float
) -> tuple[Path, Path, tuple[int, int]]:
    """Lane `slow` started, the orchestrator SIGKILLed and the tracker as `_unrecorded`
    says; the repository, the agent's counts and the supervisor's (pid, ticks) as its
    file beside the attempt's spec names them."""
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=sleep_s)
    add_lanes(repo, {"slow": {"agent": "slow"}})
    proc = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "slow") == 1, what="lane slow to start")
    proc.kill()
    proc.communicate()
    pid, ticks = (repo / ".orchestration/runs/slow.1.supervisor").read_text().split(":")[:2]
    _unrecorded(repo, "agent-slow")
    return repo, counts, (int(pid), int(ticks))


def test_a_supervisor_the_tracker_had_not_recorded_yet_is_adopted_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts, (pid, ticks) = _killed_before_the_pid_was_written(tmp_path, monkeypatch, 2.0)
    assert process_alive(pid, ticks)
    result = cli(repo, "execute")
    assert result.code == 0, result.err + result.out
    assert f"slow: adopted from an earlier run (pid {pid})" in result.out
    lane = tracker(repo)["lanes"]["slow"]
    assert (lane["status"], lane["attempts"], count_runs(counts, "slow")) == ("completed", 1, 1)


def test_cancel_finds_a_supervisor_the_tracker_had_not_recorded_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _, (pid, ticks) = _killed_before_the_pid_was_written(tmp_path, monkeypatch, 30.0)
    result = cli(repo, "cancel", "slow")
    assert result.code == 0, result.err
    assert f"slow: stopping its agent (pid {pid})" in result.out
    wait_for(lambda: not process_alive(pid, ticks), 15, "the supervisor to end")


def test_a_planted_supervisor_file_never_makes_another_process_adopted_or_signalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file names a live process that is not orchestree's supervisor (an agent can
    write into .orchestration/runs when it runs unsandboxed): it is not followed, the
    lane is retried, and that process is never signalled."""
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=30.0, attempts=2)
    add_lanes(repo, {"slow": {"agent": "slow"}})
    proc = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "slow") == 1, what="lane slow to start")
    supervisor_pid = recorded_pid(repo, "slow")
    proc.kill()
    os.kill(supervisor_pid, signal.SIGKILL)
    proc.communicate()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        ident = procs.identity(bystander.pid)
        assert ident is not None
        (repo / ".orchestration/runs/slow.1.supervisor").write_text(ident.as_text())
        _unrecorded(repo, "agent-slow")
        refused = cli(repo, "cancel", "slow")
        assert refused.code == 2, refused.out
        assert "its process is gone" in refused.err
        counting_agent(counts, sleep_s=0.0)
        result = cli(repo, "execute")
        assert result.code == 0, result.err + result.out
        assert "adopted" not in result.out
        assert tracker(repo)["lanes"]["slow"]["attempts"] == 2
        assert bystander.poll() is None  # never signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_execute_after_orchestrator_and_supervisor_died_ends_the_agent_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=30.0, attempts=2)
    add_lanes(repo, {"slow": {"agent": "slow"}})
    proc = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "slow") == 1, what="lane slow to start")
    supervisor_pid = recorded_pid(repo, "slow")
    agent_pid = int((counts / "slow.runs").read_text().split()[0])
    # The orchestrator and the lane's supervisor die; the agent, orphaned, runs on.
    proc.kill()
    os.kill(supervisor_pid, signal.SIGKILL)
    proc.communicate()
    assert process_alive(agent_pid)
    counting_agent(counts, sleep_s=0.0)  # the second attempt finishes at once
    result = cli(repo, "execute")
    assert result.code == 0, result.err + result.out
    lane = tracker(repo)["lanes"]["slow"]
    assert lane["status"] == "completed"
    assert lane["attempts"] == 2
    assert count_runs(counts, "slow") == 2
    log = (repo / ".orchestration/events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in log]
    ends = [e for e in events if e.get("event") == "lane-end" and e.get("lane") == "slow"]
    assert [e["status"] for e in ends] == ["pending", "completed"]
    assert "slow: pending (will retry): interrupted: its process is gone" in result.out
    assert not process_alive(agent_pid)  # ended before the retry shared its worktree


def test_sigkill_of_the_agent_fails_the_attempt_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=30.0, attempts=2)
    add_lanes(repo, {"victim": {"agent": "slow"}})
    proc = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "victim") == 1, what="lane victim to start")
    counting_agent(counts, sleep_s=0.0)  # the second attempt finishes at once
    agent_pid = int((counts / "victim.runs").read_text().split()[0])
    os.kill(agent_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "victim: pending (will retry)" in out
    lane = tracker(repo)["lanes"]["victim"]
    assert (lane["status"], lane["attempts"]) == ("completed", 2)
    assert count_runs(counts, "victim") == 2


def test_sigkill_of_the_supervisor_fails_the_attempt_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=30.0, attempts=2)
    add_lanes(repo, {"victim": {"agent": "slow"}})
    proc = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "victim") == 1, what="lane victim to start")
    counting_agent(counts, sleep_s=0.0)
    agent_pid = int((counts / "victim.runs").read_text().split()[0])
    supervisor_pid = recorded_pid(repo, "victim")
    os.kill(supervisor_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "victim: pending (will retry)" in out
    assert tracker(repo)["lanes"]["victim"]["status"] == "completed"
    assert count_runs(counts, "victim") == 2
    # The first attempt's agent, orphaned by its supervisor, did not keep running.
    assert not process_alive(agent_pid)


def test_a_reused_pid_in_the_tracker_is_never_signalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"ghost": {"tasks": ["echo back > back.txt"], "max_attempts": 2}})
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # The tracker says lane ghost runs as pid `stranger`, started at another time:
        # the pid was reused by an unrelated process.
        update = {
            "lanes": {"ghost": {"status": "running", "attempts": 1}},
            "agents": {
                "agent-ghost": {
                    "worktree": ".worktrees/agent-ghost",
                    "lane": "ghost",
                    "branch": "lane-ghost",
                    "status": "running",
                    "pid": stranger.pid,
                    "pid_started": 1000.0,
                }
            },
        }
        assert cli(repo, "tracker", "update", json.dumps(update)).code == 0
        cancelled = cli(repo, "cancel", "ghost")
        assert cancelled.code == 2
        assert "its process is gone" in cancelled.err
        assert stranger.poll() is None
        result = cli(repo, "execute")
        assert result.code == 0, result.err + result.out
        assert stranger.poll() is None
        lane = tracker(repo)["lanes"]["ghost"]
        assert (lane["status"], lane["attempts"]) == ("completed", 2)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_second_execute_exits_3_naming_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=1.5)
    add_lanes(repo, {"slow": {"agent": "slow"}})
    first = spawn(repo, "execute")
    wait_for(lambda: count_runs(counts, "slow") == 1, what="the first execute to start")
    before = tracker(repo)
    second = cli(repo, "execute")
    assert second.code == 3
    assert f"cannot execute: process {first.pid} holds" in second.err
    assert len(second.err.strip().splitlines()) == 1
    assert tracker(repo)["lanes"] == before["lanes"]
    first.communicate(timeout=30)
    assert first.returncode == 0
    assert count_runs(counts, "slow") == 1


def test_ctrl_c_stops_the_agents_marks_lanes_cancelled_and_keeps_worktrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, counts = _slow_counting_repo(tmp_path, monkeypatch, sleep_s=60.0)
    add_lanes(repo, {"a": {"agent": "slow"}, "b": {"agent": "slow"}})
    proc = spawn(repo, "execute")
    wait_for(
        lambda: count_runs(counts, "a") == 1 and count_runs(counts, "b") == 1,
        what="both lanes to start",
    )
    agents = [int((counts / f"{x}.runs").read_text().split()[0]) for x in "ab"]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert statuses(repo) == {"a": "cancelled", "b": "cancelled"}
    assert tracker(repo)["status"] == "cancelled"
    for pid in agents:
        assert not process_alive(pid)
    for lane_id in "ab":
        assert (repo / ".worktrees" / f"agent-{lane_id}").is_dir()
        assert "worktree kept" in tracker(repo)["lanes"][lane_id]["error"]
    assert "a: cancelled" in out


def test_a_lane_costs_at_most_two_tracker_writes_its_start_and_outcome_riding_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestree.tracker import TrackerStore

    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {f"w{i}": {"tasks": [f"echo {i} > w{i}.txt"]} for i in (1, 2, 3)})
    writes: list[list[str]] = []
    real = TrackerStore.update_many

    def recorded(store: TrackerStore, changes: list[Any]) -> Any:
        writes.append([f"{event} {detail.get('lane', '')}".strip() for _, event, detail in changes])
        return real(store, changes)

    monkeypatch.setattr(TrackerStore, "update_many", recorded)

    assert cli(repo, "execute", "--max-parallel", "1").code == 0

    assert statuses(repo) == {f"w{i}": "completed" for i in (1, 2, 3)}
    lanes = [w for w in writes if any(e.split()[0].startswith(("lane-", "agent-")) for e in w)]
    flat = [event for write in lanes for event in write]
    assert flat == [
        f"{event} w{i}"
        for i in (1, 2, 3)
        for event in ("lane-start", "agent-submit", "agent-start", "lane-end")
    ]
    # A claim is written before its agent starts: it ends its write, never deferred.
    assert all(w.index(e) == len(w) - 1 for w in lanes for e in w if e.startswith("lane-start"))
    # The start (pid) and the outcome ride with the next write when one comes within
    # 0.1 s, else are written alone: never more than two writes a lane, plus the last.
    assert 4 <= len(lanes) <= 7, lanes
    # Every event is in the audit trail, in the order it happened.
    said = [
        json.loads(x) for x in (repo / ".orchestration" / "events.jsonl").read_text().splitlines()
    ]
    assert [f"{e['event']} {e['lane']}" for e in said if "lane" in e] == flat


def test_a_branch_made_by_someone_else_mid_run_fails_its_lane_and_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    # While lane a runs (after the executor read the lane branches once), someone makes
    # lane b's branch: b's supervisor must not take it over.
    theirs = "git commit -q --allow-empty -m 'not orchestree' && git branch lane-b HEAD"
    add_lanes(
        repo, {"a": {"tasks": [theirs]}, "b": {"tasks": ["echo b > b.txt"], "depends_on": ["a"]}}
    )

    result = cli(repo, "execute", "--max-parallel", "1")

    made = git(repo, "rev-parse", "lane-b")
    assert result.code == 1
    lane = tracker(repo)["lanes"]["b"]
    assert lane["status"] == "failed"
    assert "lane-b" in lane["error"]
    assert "already exists" in lane["error"]
    assert git(repo, "log", "-1", "--format=%s", made) == "not orchestree"
    assert made == git(repo, "rev-parse", "lane-a")  # its commit, untouched
