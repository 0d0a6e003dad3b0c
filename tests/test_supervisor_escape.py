"""The per-lane supervisor leaves no process behind: not a `setsid` daemon the agent
started, not on a timeout, not when its parent is SIGKILLed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from lanes_dag import add_lanes, alive, make_repo, orchestree, read_pid, tracker, wait_for
from orchestree.executors.attempt import AttemptSpec


def daemon(pids: Path, then: str) -> str:
    return f"setsid sleep 120 & echo $! > {pids}/daemon.pid; echo $$ > {pids}/agent.pid; {then}"


def test_agent_that_starts_a_setsid_daemon_and_exits_leaves_nothing(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    repo = make_repo(tmp_path / "r")
    add_lanes(repo, tmp_path, {"daemon": {"tasks": [daemon(pids, "true")]}})
    proc = orchestree(repo, tmp_path, "execute")
    assert proc.returncode == 0, proc.stderr
    daemon_pid = read_pid(pids / "daemon.pid")
    assert daemon_pid is not None
    assert not alive(daemon_pid)
    assert tracker(repo)["lanes"]["daemon"]["status"] == "completed"


def test_agent_that_times_out_leaves_nothing(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    repo = make_repo(tmp_path / "r", defaults="kill_grace_s = 0.5")
    add_lanes(repo, tmp_path, {"slow": {"timeout_s": 1, "tasks": [daemon(pids, "sleep 60")]}})
    began = time.monotonic()
    proc = orchestree(repo, tmp_path, "execute")
    assert proc.returncode == 1
    assert time.monotonic() - began < 20
    for name in ("daemon.pid", "agent.pid"):
        pid = read_pid(pids / name)
        assert pid is not None
        assert not alive(pid), name
    assert "timed out after 1 s" in tracker(repo)["lanes"]["slow"]["error"]


def test_supervisor_ends_the_tree_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent that dies without warning (a SIGKILLed Dask worker) closes the pipe."""
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = AttemptSpec(
        lane_id="lane",
        attempt=1,
        argv=["sh", "-c", daemon(pids, "sleep 60")],
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(tmp_path),
        log=str(tmp_path / "agent.log"),
        timeout_s=60,
        grace_s=5,
        die_with_parent=True,
    )
    (tmp_path / "spec.json").write_text(spec.to_json())
    # The parent: starts the supervisor with a pipe as its stdin, then waits forever.
    parent_code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-m', 'orchestree.executors.supervisor', "
        "sys.argv[1]], "
        "stdin=subprocess.PIPE, start_new_session=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code, str(tmp_path / "spec.json")])
    agent = wait_for(lambda: read_pid(pids / "agent.pid"), 20, "the agent")
    child = wait_for(lambda: read_pid(pids / "daemon.pid"), 5, "its daemon")
    parent.kill()
    parent.wait()
    killed = time.monotonic()
    wait_for(lambda: not alive(agent) and not alive(child), 2, "the agent's tree to end")
    assert time.monotonic() - killed < 2
    wait_for((tmp_path / "result.json").exists, 5, "the outcome")
    assert json.loads((tmp_path / "result.json").read_text())["reason"] == "parent-died"
