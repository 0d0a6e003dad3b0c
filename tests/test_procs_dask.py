"""On Dask, a lane's supervisor that dies (SIGKILL, OOM) takes its agent's whole tree
with it, a `setsid` child included, and the lane is reported lost and retried
(issue 13, must-show 3): real LocalCluster workers, real processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from lanes_dag import (
    add_lanes,
    alive,
    counted,
    make_repo,
    read_pid,
    runs,
    start,
    supervisor_of,
    tracker,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_a_supervisor_killed_on_a_worker_ends_its_tree_and_the_lane_is_retried(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "r", 'kind = "dask"\nworkers = 1')
    counter, pids = tmp_path / "counter", tmp_path / "pids"
    pids.mkdir()
    counter.mkdir()
    tree = (
        f"echo $$ > {pids}/agent.pid; "
        f"setsid sh -c 'echo $$ > {pids}/child.pid; exec sleep 120' & sleep 60"
    )
    first = f"[ $ORCHESTREE_ATTEMPT = 2 ] || {{ {tree}; }}"
    overlap = f"for p in $(cat {pids}/*.pid); do kill -0 $p 2>/dev/null && echo $p; done"
    task = f"{overlap} > {pids}/overlap; echo done > done.txt"
    victim = {"max_attempts": 2, "tasks": counted(counter, "victim", first, task)}
    add_lanes(repo, tmp_path, {"victim": victim})
    run = start(repo, tmp_path, "execute")
    try:
        agent = wait_for(lambda: read_pid(pids / "agent.pid"), 90, "the agent")
        child = wait_for(lambda: read_pid(pids / "child.pid"), 10, "its setsid child")
        assert os.getsid(child) == child  # it left the agent's session and group
        supervisor = supervisor_of(agent)
        os.kill(supervisor, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not alive(agent) and not alive(child), 5, "the agent's tree to end")
        assert time.monotonic() - killed < 5
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
        run.communicate()
    assert run.returncode == 0, err
    assert "victim: pending (will retry): worker lost" in out
    assert "supervisor ended without an outcome" in out
    assert (pids / "overlap").read_text().strip() == ""  # attempt 2 ran alone
    assert runs(counter) == {"victim": 2}
    lane = tracker(repo)["lanes"]["victim"]
    assert (lane["status"], lane["attempts"]) == ("completed", 2)
