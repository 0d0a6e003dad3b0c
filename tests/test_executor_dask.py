"""The Dask executor against real processes: a LocalCluster, a separately started
`dask scheduler` with two `dask worker`s, a bare git remote, and faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanes_dag import (
    add_lanes,
    alive,
    counted,
    dag,
    dask_cluster,
    env,
    git,
    make_repo,
    orchestree,
    parent,
    read_pid,
    runs,
    start,
    statuses,
    supervisor_of,
    tracker,
    trees,
    unexpected,
    wait_for,
)

pytestmark = pytest.mark.slow

EXPECTED = {
    "base": "completed",
    "uses-base": "completed",
    "fails": "failed",
    "after-fail": "blocked",
    "edit-x": "completed",
    "edit-y": "completed",
    "commits": "completed",
    "report": "completed",
}


MERGED = {
    **EXPECTED,
    **{k: "merged" for k in ("base", "uses-base", "edit-x", "commits", "report")},
    "edit-y": "conflict",
}


def run_dag(root: Path, executor: str) -> tuple[Path, dict[str, str], dict[str, str | None]]:
    """Execute the DAG, then merge it; statuses after both and the trees of the lanes
    and, under "main", of the base branch after the merge."""
    repo = make_repo(root, executor)
    counter = root / "counter"
    add_lanes(repo, root, dag(counter))
    proc = orchestree(repo, root, "execute")
    assert proc.returncode == 1, proc.stderr  # one lane failed, one blocked
    assert statuses(repo, root) == EXPECTED, unexpected(repo, root, EXPECTED)
    assert runs(counter) == {lane: 1 for lane in EXPECTED if lane != "after-fail"}
    found = trees(repo, list(EXPECTED))
    merged = orchestree(repo, root, "merge")
    assert merged.returncode == 1, merged.stderr  # edit-y conflicts with edit-x
    found["main"] = git(repo, "rev-parse", "main^{tree}")
    return repo, statuses(repo, root), found


def test_dag_on_a_local_cluster_matches_local(tmp_path: Path) -> None:
    local_repo, local_status, local_trees = run_dag(tmp_path / "local", "")
    dask_repo, dask_status, dask_trees = run_dag(
        tmp_path / "dask", 'kind = "dask"\nworkers = 2\nremote = "origin"'
    )
    assert local_status == dask_status == MERGED
    assert local_trees == dask_trees
    assert git(dask_repo, "show", "main:used.txt") == "base"
    assert dask_trees["after-fail"] is None
    assert dask_trees["report"] is not None
    lanes = tracker(dask_repo)["lanes"]
    assert lanes["report"]["results"] == ["docs/_generated/report/report.md"]
    assert all(lanes[k]["host"] and lanes[k]["worker"] for k in EXPECTED if k != "after-fail")
    conflict = tracker(dask_repo)["lanes"]["edit-y"]["merge"]["conflicts"]
    assert conflict == tracker(local_repo)["lanes"]["edit-y"]["merge"]["conflicts"]
    assert conflict == ["shared.txt"]


def test_dag_on_separate_scheduler_and_workers_matches_local(tmp_path: Path) -> None:
    _, local_status, local_trees = run_dag(tmp_path / "local", "")
    with dask_cluster(tmp_path / "cluster") as address:
        executor = f'kind = "dask"\nscheduler = "{address}"\nremote = "origin"'
        dask_repo, dask_status, dask_trees = run_dag(tmp_path / "dask", executor)
    assert local_status == dask_status == MERGED
    assert local_trees == dask_trees
    hosts = {lane["worker"] for lane in tracker(dask_repo)["lanes"].values() if lane["worker"]}
    assert len(hosts) == 2  # both workers ran lanes
    caches = [tmp_path / "cluster" / f"worker{n}" / ".cache" / "orchestree" / "git" for n in (0, 1)]
    assert all(any(cache.iterdir()) for cache in caches)  # each its own reference cache


def agent_pids(where: Path) -> str:
    """A lane task that records the agent's pid and a setsid child's, then waits."""
    return f"echo $$ > {where}/agent.pid; setsid sleep 120 & echo $! > {where}/child.pid; sleep 60"


def test_worker_killed_mid_lane_is_lost_and_retried_once(tmp_path: Path) -> None:
    with dask_cluster(tmp_path / "cluster") as address:
        repo = make_repo(tmp_path / "r", f'kind = "dask"\nscheduler = "{address}"')
        counter, pids = tmp_path / "counter", tmp_path / "pids"
        pids.mkdir()
        first = f"[ $ORCHESTREE_ATTEMPT = 2 ] || {{ {agent_pids(pids)}; }}"
        overlap = f"for p in $(cat {pids}/*.pid); do kill -0 $p 2>/dev/null && echo $p; done"
        task = f"{overlap} > {pids}/overlap; echo done > done.txt"
        victim = {"max_attempts": 2, "tasks": counted(counter, "victim", first, task)}
        add_lanes(repo, tmp_path, {"victim": victim})
        counter.mkdir()
        run = start(repo, tmp_path, "execute")
        agent = wait_for(lambda: read_pid(pids / "agent.pid"), 60, "the agent")
        child = wait_for(lambda: read_pid(pids / "child.pid"), 10, "its setsid child")
        worker = parent(supervisor_of(agent))
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not alive(agent) and not alive(child), 2, "the agent's tree to end")
        assert time.monotonic() - killed < 2
        out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    assert "worker lost" in out
    assert (pids / "overlap").read_text().strip() == ""  # attempt 2 ran alone
    assert runs(counter) == {"victim": 2}
    assert (counter / "victim").read_text().split() == ["1", "2"]
    lane = tracker(repo)["lanes"]["victim"]
    assert (lane["status"], lane["attempts"]) == ("completed", 2)


def test_cancel_stops_a_remote_agent_and_pushes_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", 'kind = "dask"\nworkers = 2')
    pids = tmp_path / "pids"
    pids.mkdir()
    add_lanes(repo, tmp_path, {"long": {"tasks": [agent_pids(pids)]}})
    run = start(repo, tmp_path, "execute")
    agent = wait_for(lambda: read_pid(pids / "agent.pid"), 60, "the agent")
    child = wait_for(lambda: read_pid(pids / "child.pid"), 10, "its setsid child")
    asked = time.monotonic()
    said = orchestree(repo, tmp_path, "cancel", "long")
    assert "stopping" in said.stdout, said.stderr
    wait_for(lambda: not alive(agent) and not alive(child), 2, "the agent's tree to end")
    assert time.monotonic() - asked < 2
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    assert tracker(repo)["lanes"]["long"]["status"] == "cancelled"
    remote = tmp_path / "r" / "remote.git"
    assert git(remote, "for-each-ref", "refs/heads/lane-long", "refs/orchestree/results") == ""


def test_retired_worker_rerun_is_refused_by_the_claim(tmp_path: Path) -> None:
    counter, pids = tmp_path / "counter", tmp_path / "pids"
    counter.mkdir()
    pids.mkdir()
    with dask_cluster(tmp_path / "cluster") as address:
        repo = make_repo(tmp_path / "r", f'kind = "dask"\nscheduler = "{address}"')
        add_lanes(repo, tmp_path, {"moved": {"tasks": counted(counter, "moved", agent_pids(pids))}})
        run = start(repo, tmp_path, "execute")
        agent = wait_for(lambda: read_pid(pids / "agent.pid"), 60, "the agent")
        worker = wait_for(lambda: tracker(repo)["lanes"]["moved"]["worker"], 10, "its worker")
        retire = (
            "import sys; from distributed import Client; "
            "c = Client(sys.argv[1]); c.retire_workers([sys.argv[2]]); c.close()"
        )
        subprocess.run([sys.executable, "-c", retire, address, worker], check=True, timeout=60)
        wait_for(lambda: not alive(agent), 5, "the retired worker's agent to end")
        out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    lane = tracker(repo)["lanes"]["moved"]
    assert lane["status"] == "failed"
    assert runs(counter) == {"moved": 1}
    assert "claim" in lane["error"] or "closing" in lane["error"], lane["error"]
    remote = tmp_path / "r" / "remote.git"
    assert git(remote, "for-each-ref", "refs/heads/lane-moved") == ""
    print(out, lane["error"])


def test_orchestrator_killed_mid_run_reattaches_and_runs_nothing_again(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.mkdir()
    lanes = {
        "a": {"tasks": counted(counter, "a", "sleep 1.5", "echo a > a.txt")},
        "b": {"tasks": counted(counter, "b", "sleep 1.5", "echo b > b.txt")},
        "c": {"depends_on": ["a"], "tasks": counted(counter, "c", "cat a.txt > c.txt")},
    }
    with dask_cluster(tmp_path / "cluster") as address:
        repo = make_repo(tmp_path / "r", f'kind = "dask"\nscheduler = "{address}"')
        add_lanes(repo, tmp_path, lanes)
        first = start(repo, tmp_path, "execute")
        wait_for(lambda: runs(counter) == {"a": 1, "b": 1}, 60, "lanes a and b to start")
        first.kill()
        first.communicate()
        assert {k: v["status"] for k, v in tracker(repo)["lanes"].items()} == {
            "a": "running", "b": "running", "c": "pending"}  # fmt: skip
        time.sleep(2.5)  # a and b finish while no orchestrator runs
        again = orchestree(repo, tmp_path, "execute")
    assert again.returncode == 0, again.stderr
    assert "adopted from an earlier run" in again.stdout
    assert runs(counter) == {"a": 1, "b": 1, "c": 1}
    assert statuses(repo, tmp_path) == {"a": "completed", "b": "completed", "c": "completed"}
    assert git(repo, "show", "lane-c:c.txt") == "a"


def test_an_outcome_is_written_while_another_lane_keeps_printing(tmp_path: Path) -> None:
    """A remote agent's output arrives every tenth of a second and writes no tracker: a
    lane that ended meanwhile is still recorded within a moment, not when the chatty
    lane ends (outcomes ride with the next write for at most 0.1 s, lanebook.py)."""
    counter = tmp_path / "counter"
    counter.mkdir()
    chatty = "for i in $(seq 1 200); do echo line $i; sleep 0.05; done"
    lanes = {
        "chatty": {"tasks": counted(counter, "chatty", chatty)},
        "quick": {"tasks": counted(counter, "quick", "echo q > q.txt")},
    }
    repo = make_repo(tmp_path / "r", 'kind = "dask"\nworkers = 2')
    add_lanes(repo, tmp_path, lanes)
    run = start(repo, tmp_path, "execute")
    try:
        wait_for(lambda: runs(counter).get("quick") == 1, 60, "lane quick to run")
        wait_for(lambda: tracker(repo)["lanes"]["quick"]["status"] == "completed", 5,
                 "quick's outcome in the tracker")  # fmt: skip
        assert tracker(repo)["lanes"]["chatty"]["status"] == "running"
    finally:
        _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert statuses(repo, tmp_path) == {"chatty": "completed", "quick": "completed"}


def test_scheduler_with_default_allowed_failures_is_refused(tmp_path: Path) -> None:
    with dask_cluster(tmp_path / "cluster", workers=0, allowed_failures=None) as address:
        repo = make_repo(tmp_path / "r", f'kind = "dask"\nscheduler = "{address}"')
        add_lanes(repo, tmp_path, {"x": {"tasks": ["true"]}})
        proc = orchestree(repo, tmp_path, "execute", check=False)
    assert proc.returncode == 3
    assert "distributed.scheduler.allowed-failures = 3" in proc.stderr
    assert "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0" in proc.stderr
    assert statuses(repo, tmp_path) == {"x": "pending"}


def test_dask_kind_without_dask_says_how_to_install(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", 'kind = "dask"')
    add_lanes(repo, tmp_path, {"x": {"tasks": ["true"]}})
    hide = (
        "import sys; sys.modules['distributed'] = None; from orchestree.cli import main; "
        "sys.exit(main(['execute', '--repo', sys.argv[1]]))"
    )
    proc = subprocess.run([sys.executable, "-c", hide, str(repo)], capture_output=True,
                          text=True, env=env(tmp_path), check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'orchestree: [executor] kind = "dask" needs Dask: install it with '
        "pip install 'orchestree[dask]'"
    ]
