"""procs: ending a whole process tree, a `setsid` child included (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exec_helpers import process_alive, wait_for
from orchestree import procs
from orchestree.procs import Identity, Tree

IGNORE_TERM = "trap '' TERM; "


def _pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip().isdigit(), what=str(path))
    return int(path.read_text())


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids a test started outside its own children: killed at the end, whatever happens."""
    found: list[int] = []
    yield found
    for pid in found:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _tree(tmp_path: Path, token: str, strays: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    """A group leader (ignoring TERM) with a child in its group and a `setsid` child."""
    script = (
        f"{IGNORE_TERM}sleep 300 & "
        f"setsid sh -c '{IGNORE_TERM}echo $$ > {tmp_path}/daemon; sleep 300' & "
        "wait"
    )
    env = {**os.environ, procs.TREE_ENV: token}
    leader = procs.spawn(["sh", "-c", script], env=env)
    daemon = _pid_in(tmp_path / "daemon")
    strays.append(daemon)
    return leader, daemon


def test_end_tree_ends_the_group_the_descendants_and_the_token_carriers(
    tmp_path: Path, strays: list[int]
) -> None:
    leader, daemon = _tree(tmp_path, "tok-1", strays)
    members = Tree(pgid=leader.pid, root=os.getpid(), token="tok-1").members()
    assert leader.pid in members
    assert daemon in members
    assert os.getsid(daemon) != os.getsid(leader.pid)  # it left the session
    began = time.monotonic()
    procs.end_tree(Tree(pgid=leader.pid, token="tok-1"), grace_s=0.3, reap=leader.poll)
    assert time.monotonic() - began < 5
    assert leader.wait(5) == -signal.SIGKILL  # it ignored TERM: KILL after the grace
    assert not process_alive(daemon)
    assert Tree(pgid=leader.pid, token="tok-1").members() == []


def test_a_group_alone_misses_a_setsid_child_the_token_catches(
    tmp_path: Path, strays: list[int]
) -> None:
    leader, daemon = _tree(tmp_path, "tok-2", strays)
    procs.end_tree(Tree(pgid=leader.pid), grace_s=0.3, reap=leader.poll)
    leader.wait(5)
    assert process_alive(daemon)  # outside the group, and no longer our descendant
    procs.end_tree(Tree(token="tok-2"), grace_s=0.3)
    wait_for(lambda: not process_alive(daemon), 5, "the daemon to end")


def test_the_token_never_reaches_a_process_without_it(tmp_path: Path, strays: list[int]) -> None:
    leader, daemon = _tree(tmp_path, "tok-3", strays)
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, procs.TREE_ENV: "tok-3x"})
    try:
        procs.end_tree(Tree(token="tok-3"), grace_s=0.3, reap=leader.poll)
        assert leader.wait(5) == -signal.SIGKILL
        assert not process_alive(daemon)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_live_descendants_ignores_zombies() -> None:
    child = subprocess.Popen(["sh", "-c", "exit 0"])
    wait_for(lambda: not process_alive(child.pid), what="the child to exit")
    assert child.pid not in procs.live_descendants(os.getpid())  # a zombie until reaped
    child.wait()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert sleeper.pid in procs.live_descendants(os.getpid())
    finally:
        sleeper.kill()
        sleeper.wait()


def _record(path: Path, leader: subprocess.Popen[bytes], token: str, keeper: str | None) -> None:
    ident = procs.identity(leader.pid)
    assert ident is not None
    record = {**procs.agent_record(ident, token), "supervisor": keeper}
    path.write_text(json.dumps(record), encoding="utf-8")


def test_an_orphaned_agent_is_ended_with_its_setsid_child(
    tmp_path: Path, strays: list[int]
) -> None:
    leader, daemon = _tree(tmp_path, "tok-4", strays)
    dead = subprocess.Popen(["true"])
    dead_ident = procs.identity(dead.pid) or Identity(dead.pid, 1, procs.boot_id())
    dead.wait()
    agent_file = tmp_path / "agent.json"
    _record(agent_file, leader, "tok-4", dead_ident.as_text())
    assert procs.end_orphaned_agent(agent_file, grace_s=0.3)
    leader.wait(5)
    assert not process_alive(daemon)


def test_an_agent_whose_supervisor_lives_is_left_to_it(tmp_path: Path, strays: list[int]) -> None:
    leader, daemon = _tree(tmp_path, "tok-5", strays)
    me = procs.identity(os.getpid())
    assert me is not None
    agent_file = tmp_path / "agent.json"
    _record(agent_file, leader, "tok-5", me.as_text())  # "its supervisor" is alive: us
    try:
        assert not procs.end_orphaned_agent(agent_file, grace_s=0.3)
        assert leader.poll() is None
        assert process_alive(daemon)
    finally:
        procs.end_tree(Tree(pgid=leader.pid, token="tok-5"), 0.1, reap=leader.poll)
        leader.wait(5)


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        real = procs.identity(stranger.pid)
        assert real is not None
        recorded = Identity(real.pid, real.ticks - 1, real.boot_id)  # an earlier owner
        assert not procs.signal_if_ours(recorded, signal.SIGKILL)
        # Recorded as the leader of an orphaned agent, without a token: nothing ends.
        agent_file = tmp_path / "agent.json"
        record = {"pid": real.pid, "start_ticks": real.ticks - 1, "boot_id": real.boot_id}
        agent_file.write_text(json.dumps(record), encoding="utf-8")
        assert not procs.end_orphaned_agent(agent_file, grace_s=0.1)
        time.sleep(0.1)
        assert stranger.poll() is None
        assert procs.signal_if_ours(real, signal.SIGTERM)
        assert stranger.wait(5) == -signal.SIGTERM
    finally:
        stranger.kill()
        stranger.wait()


def test_an_unreadable_agent_file_ends_nothing(tmp_path: Path) -> None:
    assert not procs.end_orphaned_agent(tmp_path / "missing.json", 0.1)
    (tmp_path / "torn.json").write_text('{"pid": 1, "start_', encoding="utf-8")
    assert not procs.end_orphaned_agent(tmp_path / "torn.json", 0.1)


def test_a_fork_bomb_is_ended(tmp_path: Path) -> None:
    code = (
        "import os, time\n"
        "for _ in range(6):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "time.sleep(60)\n"
    )
    token = "tok-bomb"
    proc = procs.spawn([sys.executable, "-c", code], env={**os.environ, procs.TREE_ENV: token})
    wait_for(lambda: len(Tree(token=token).members()) >= 64, 20, "the bomb to spread")
    procs.end_tree(Tree(pgid=proc.pid, token=token), grace_s=0.2, reap=proc.poll)
    proc.wait(5)
    assert Tree(token=token).members() == []
