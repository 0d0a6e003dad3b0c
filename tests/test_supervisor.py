"""The per-lane supervisor: nothing an agent starts outlives its lane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from exec_helpers import process_alive, wait_for, write_script
from orchestree.executors.attempt import AttemptFiles, AttemptSpec


def _spec(tmp_path: Path, argv: list[str], **extra: Any) -> Path:
    """An attempt's spec with no git work around the agent; its result: result.json."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    fields: dict[str, Any] = {"timeout_s": 30.0, "grace_s": 0.3, **extra}
    spec = AttemptSpec(
        "lane", 1, argv, dict(os.environ), str(work), str(tmp_path / "agent.log"), **fields
    )
    files = AttemptFiles(tmp_path)
    files.spec.write_text(spec.to_json(), encoding="utf-8")
    return files.spec


def _start(spec: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestree.executors.supervisor", str(spec)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _result(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    return data


def _pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text(encoding="utf-8").split()]


def test_exit_code_and_output_are_recorded(tmp_path: Path) -> None:
    spec = _spec(tmp_path, ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"])
    assert _start(spec).wait(20) == 0
    result = _result(tmp_path)
    assert result["reason"] == "exited"
    assert result["exit_code"] == 7
    log = (tmp_path / "agent.log").read_text(encoding="utf-8")
    assert "to-stdout" in log
    assert "to-stderr" in log


def test_agent_stdin_is_dev_null(tmp_path: Path) -> None:
    script = write_script(tmp_path / "agent.py", "print('read', repr(sys.stdin.read()))\n")
    assert _start(_spec(tmp_path, [sys.executable, str(script)])).wait(20) == 0
    assert "read ''" in (tmp_path / "agent.log").read_text(encoding="utf-8")
    assert _result(tmp_path)["exit_code"] == 0


def test_timeout_kills_an_agent_that_ignores_sigterm_and_its_child(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = write_script(
        tmp_path / "agent.py",
        f"""
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "60"])
Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
while True:
    time.sleep(1)
""",
    )
    started = time.monotonic()
    proc = _start(_spec(tmp_path, [sys.executable, str(script)], timeout_s=1.0))
    assert proc.wait(20) == 0
    elapsed = time.monotonic() - started
    result = _result(tmp_path)
    assert result["reason"] == "timeout"
    assert result["exit_code"] == -signal.SIGKILL  # it ignored TERM, so KILL ended it
    agent, child = _pids(pids)
    assert not process_alive(agent)
    assert not process_alive(child)
    assert elapsed < 10
    assert "ending the agent (timeout)" in (tmp_path / "agent.log").read_text(encoding="utf-8")


def test_a_setsid_daemon_does_not_outlive_the_agent(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The daemon leaves the agent's process group and session; the agent exits at once.
    script = write_script(
        tmp_path / "agent.py",
        f"""
daemon = subprocess.Popen(
    ["sleep", "300"], start_new_session=True,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
Path({str(pids)!r}).write_text(str(daemon.pid))
""",
    )
    assert _start(_spec(tmp_path, [sys.executable, str(script)])).wait(20) == 0
    (daemon,) = _pids(pids)
    assert _result(tmp_path)["exit_code"] == 0
    assert not process_alive(daemon)


def test_a_double_forked_setsid_daemon_is_caught_too(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The classic daemon: fork, setsid, fork again; the middle process exits at once.
    script = write_script(
        tmp_path / "agent.py",
        f"""
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        Path({str(pids)!r}).write_text(str(os.getpid()))
        os.execvp("sleep", ["sleep", "300"])
    os._exit(0)
os.wait()
while not Path({str(pids)!r}).exists():
    time.sleep(0.01)
""",
    )
    assert _start(_spec(tmp_path, [sys.executable, str(script)])).wait(20) == 0
    (daemon,) = _pids(pids)
    assert not process_alive(daemon)


def test_sigterm_to_the_supervisor_ends_the_tree_as_cancelled(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = write_script(
        tmp_path / "agent.py",
        f"""
child = subprocess.Popen(["sleep", "60"])
Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
child.wait()
""",
    )
    proc = _start(_spec(tmp_path, [sys.executable, str(script)]))
    wait_for(pids.exists, what="the agent to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert _result(tmp_path)["reason"] == "cancelled"
    assert not any(process_alive(pid) for pid in _pids(pids))


def test_die_with_parent_ends_the_agent(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = write_script(
        tmp_path / "agent.py",
        f"Path({str(pids)!r}).write_text(str(os.getpid()))\ntime.sleep(60)\n",
    )
    spec = _spec(tmp_path, [sys.executable, str(script)], die_with_parent=True)
    # A middle process starts the supervisor and is then killed: the supervisor's
    # parent changes, so it ends the lane.
    middle = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-m', 'orchestree.executors.supervisor',"
            f" {str(spec)!r}])\n"
            "time.sleep(60)\n",
        ],
        start_new_session=True,
    )
    wait_for(pids.exists, what="the agent to start")
    middle.kill()
    middle.wait()
    wait_for((tmp_path / "result.json").exists, what="the supervisor's result")
    assert _result(tmp_path)["reason"] == "parent-died"
    wait_for(lambda: not process_alive(_pids(pids)[0]), what="the agent to end")


def test_a_failing_setup_fails_before_the_agent_runs(tmp_path: Path) -> None:
    marker = tmp_path / "agent-ran"
    spec = _spec(
        tmp_path,
        ["touch", str(marker)],
        setup="echo installing deps; echo broken >&2; exit 5",
    )
    assert _start(spec).wait(20) == 0
    result = _result(tmp_path)
    assert result["reason"] == "setup-failed"
    assert result["exit_code"] == 5
    assert not marker.exists()
    log = (tmp_path / "agent.log").read_text(encoding="utf-8")
    assert "installing deps" in log
    assert "broken" in log
    assert "worktree setup failed (exit 5)" in log


def test_a_missing_program_is_an_error_outcome(tmp_path: Path) -> None:
    assert _start(_spec(tmp_path, ["no-such-agent-program-xyz"])).wait(20) == 0
    result = _result(tmp_path)
    assert result["reason"] == "error"
    assert "no-such-agent-program-xyz" in (tmp_path / "agent.log").read_text(encoding="utf-8")
