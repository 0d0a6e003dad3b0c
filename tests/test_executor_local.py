"""The local executor through the executor interface, on a real repository."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from lanes_dag import alive, make_repo, read_pid, runs, wait_for
from orchestree import git
from orchestree.executors.attempt import LaneSpec, LaneUpdate
from orchestree.executors.local import LocalExecutor
from orchestree.lane_ops import add_lanes
from orchestree.models import Lane
from orchestree.repo import Repo, open_repo


def spec(repo: Repo, lane_id: str, attempt: int = 1) -> LaneSpec:
    tracker = repo.store.read()
    return LaneSpec(
        lane_id=lane_id,
        attempt=attempt,
        lane=tracker.lanes[lane_id],
        config=repo.config,
        base=tracker.base_commit,
        start=tracker.base_commit,
        expected=None,
        port=20000,
        identity=git.identity(repo.root),
    )


def finish(executor: LocalExecutor, timeout: float = 30) -> list[LaneUpdate]:
    seen: list[LaneUpdate] = []
    deadline = time.monotonic() + timeout
    while not any(u.kind == "finished" for u in seen):
        assert time.monotonic() < deadline, "no finished update"
        seen += executor.poll(0.5)
    return seen


def setup(tmp_path: Path, lanes: dict[str, Lane | dict[str, object]]) -> Repo:
    root = make_repo(tmp_path / "r")
    repo = open_repo(root)
    add_lanes(repo, {k: v if isinstance(v, dict) else v.model_dump() for k, v in lanes.items()})
    return repo


def test_submit_then_poll_reports_started_and_finished(tmp_path: Path) -> None:
    repo = setup(tmp_path, {"one": {"tasks": ["echo hi", "echo one > one.txt"]}})
    executor = LocalExecutor(repo)
    handle = executor.submit(spec(repo, "one"))
    assert handle.startswith("local:one:1:")
    updates = finish(executor)
    assert [u.kind for u in updates] == ["started", "finished"]
    done = updates[-1]
    assert (done.reason, done.exit_code) == ("exited", 0)
    assert "hi" in done.output
    assert done.head == executor.fetch("one")
    assert git.changed_files(repo.root, spec(repo, "one").start, done.head or "") == ["one.txt"]
    executor.close()


def test_cancel_ends_the_attempt_as_cancelled(tmp_path: Path) -> None:
    repo = setup(tmp_path, {"slow": {"tasks": ["sleep 30"]}})
    executor = LocalExecutor(repo)
    executor.submit(spec(repo, "slow"))
    executor.poll(0)
    began = time.monotonic()
    executor.cancel("slow", 1)
    done = finish(executor)[-1]
    assert done.reason == "cancelled"
    assert time.monotonic() - began < 5
    executor.close()


def test_reattach_adopts_a_running_supervisor_and_reports_a_gone_one(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.mkdir()
    task = f"echo $ORCHESTREE_ATTEMPT >> {counter}/adopted; echo $$ > {counter}/pid; sleep 1"
    repo = setup(tmp_path, {"adopted": {"tasks": [task]}})
    first = LocalExecutor(repo)
    handle = first.submit(spec(repo, "adopted"))
    pid = wait_for(lambda: read_pid(counter / "pid"), 10, "the agent")
    second = LocalExecutor(repo)  # a restarted orchestrator: the supervisor runs on
    gone = "local:ghost:1:999999:1.0"
    assert second.reattach([handle, gone]) == [LaneUpdate("ghost", 1, "finished", reason="gone")]
    done = finish(second)[-1]
    assert (done.lane_id, done.reason, done.exit_code) == ("adopted", "exited", 0)
    assert not alive(pid)
    supervisor_pid = first.attempts["adopted"].pid
    wait_for(lambda: not alive(supervisor_pid), 10, "the first supervisor to end")
    assert runs(counter) == {"adopted": 1, "pid": 1}  # one agent run, adopted, not restarted
    first.close()
    second.close()


def test_work_a_killed_supervisor_left_is_committed_from_its_spec(tmp_path: Path) -> None:
    """The supervisor died before its leftover commit: the executor runs the same commit
    on the same spec (`launch.commit_leftovers`), so the agent's file is not lost."""
    pids = tmp_path / "pids"
    pids.mkdir()
    task = f"echo left > left.txt; echo $$ > {pids}/agent; sleep 30"
    repo = setup(tmp_path, {"cut": {"tasks": [task]}})
    executor = LocalExecutor(repo)
    executor.submit(spec(repo, "cut"))
    agent = wait_for(lambda: read_pid(pids / "agent"), 20, "the agent")
    os.kill(executor.attempts["cut"].pid, signal.SIGKILL)
    done = finish(executor)[-1]
    assert done.reason == "error"
    assert str(done.error).startswith("the lane's supervisor ended without an outcome")
    assert not alive(agent)  # its orphaned tree was ended before the commit
    head = done.head or ""
    assert git.run("show", f"{head}:left.txt", cwd=repo.root).stdout == "left\n"
    said = git.run("log", "-1", "--format=%s", head, cwd=repo.root).stdout
    assert said.startswith("orchestree: work left uncommitted by lane cut (attempt 1)")
    assert done.changed == ["left.txt"]
    executor.close()


def test_a_supervisor_whose_identity_cannot_be_written_is_ended(tmp_path: Path) -> None:
    """The runs folder refuses the write (read-only here; a full disk alike): the
    process just started is ended rather than left running with nothing naming it."""
    import subprocess

    from orchestree import procs
    from orchestree.executors import launch
    from orchestree.executors.attempt import AttemptFiles

    runs_folder = tmp_path / "runs"
    runs_folder.mkdir()
    started = subprocess.Popen(["sleep", "60"])
    try:
        ident = procs.identity(started.pid)
        assert ident is not None
        subprocess.run(["mount", "--bind", str(runs_folder), str(runs_folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(runs_folder)], check=True)
            files = AttemptFiles(runs_folder, "a.1.")
            with pytest.raises(OSError, match="Read-only file system"):
                launch._record_supervisor(files, ident)
        finally:
            subprocess.run(["umount", "-l", str(runs_folder)], check=False)
        assert started.wait(5) == -signal.SIGTERM
        assert list(runs_folder.iterdir()) == []
    finally:
        started.kill()
        started.wait()
