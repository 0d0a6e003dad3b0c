"""A per-lane supervisor: runs one agent and makes sure nothing of it outlives the lane.

    python -m orchestree.supervisor SPEC.json

It makes itself a child subreaper (so a descendant that calls `setsid` and leaves
the agent's process group is re-parented to us, not to PID 1), starts the agent in a
process group of its own with stdin from /dev/null and output to the lane's log,
and ends the whole tree — group and re-parented descendants, zombies ignored — when
the agent exits, at the deadline, on SIGTERM, or (with `die_with_parent`) when its
parent goes away. It then writes the outcome to `result` atomically and exits.
Measured facts behind this: ../shared/research/dask-executor.md, last sections.

Standard library only: it starts in ~50 ms and costs a few MB per lane.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
SCAN_S = 0.05


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process, read from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        # The command name may hold spaces and parentheses: parse after the last ')'.
        rest = raw[raw.rfind(")") + 2 :].split()
        if len(rest) >= 2:
            table[int(name)] = (int(rest[1]), rest[0])
    return table


def live_descendants(root: int) -> list[int]:
    """Descendants of `root` that are not zombies."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if table.get(pid, (0, "Z"))[1] not in ("Z", "X"):
            found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _signal_all(pgid: int | None, pids: list[int], sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def end_tree(pgid: int | None, grace_s: float) -> None:
    """TERM the group and every descendant, then KILL whatever is left after `grace_s`."""
    me = os.getpid()
    _signal_all(pgid, live_descendants(me), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap()
        if not live_descendants(me):
            return
        time.sleep(SCAN_S)
    for _ in range(100):  # KILL until nothing is left (a fork bomb may take rounds)
        left = live_descendants(me)
        if not left:
            break
        _signal_all(pgid, left, signal.SIGKILL)
        time.sleep(SCAN_S / 5)
        _reap()


def _write_result(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _run_setup(spec: dict[str, Any], log: Any, deadline: float, grace: float) -> int:
    """Run `[worktree] setup` once in a new worktree, under the lane's deadline."""
    proc = subprocess.Popen(
        ["sh", "-c", spec["setup"]],
        cwd=spec["cwd"],
        env=spec["env"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        return proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        end_tree(proc.pid, grace)
        proc.wait()
        return -1


def supervise(spec: dict[str, Any]) -> dict[str, Any]:
    _become_subreaper()
    stop = {"reason": ""}

    def on_term(signum: int, _frame: object) -> None:
        stop["reason"] = "cancelled" if signum == signal.SIGTERM else "interrupted"

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    parent = os.getppid()
    started = _now()
    timeout = float(spec["timeout_s"])
    grace = float(spec.get("grace_s", 5.0))
    deadline = time.monotonic() + timeout
    with open(spec["log"], "ab", buffering=0) as log:
        if spec.get("setup"):
            log.write(f"orchestree: worktree setup: {spec['setup']}\n".encode())
            code = _run_setup(spec, log, deadline, grace)
            if code != 0:
                log.write(f"orchestree: worktree setup failed (exit {code})\n".encode())
                return {"reason": "setup-failed", "exit_code": code, "started_at": started}
        try:
            agent = subprocess.Popen(
                spec["argv"],
                cwd=spec["cwd"],
                env=spec["env"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"orchestree: cannot start {spec['argv'][0]}: {exc}\n".encode())
            return {"reason": "error", "exit_code": None, "error": str(exc), "started_at": started}
        reason = "exited"
        while agent.poll() is None:
            if stop["reason"]:
                reason = stop["reason"]
            elif time.monotonic() >= deadline:
                reason = "timeout"
            elif spec.get("die_with_parent") and os.getppid() != parent:
                reason = "parent-died"
            if reason != "exited":
                log.write(f"\norchestree: ending the agent ({reason})\n".encode())
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.wait(SCAN_S * 2)
        # Whatever the agent left running (a daemon that called setsid, a background
        # job) ends with it: a finished lane leaves no process behind.
        end_tree(agent.pid, min(grace, 1.0) if reason == "exited" else grace)
        code = agent.wait()
    return {
        "reason": reason,
        "exit_code": code,
        "agent_pid": agent.pid,
        "started_at": started,
        "finished_at": _now(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m orchestree.supervisor SPEC.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    try:
        result = supervise(spec)
    except Exception as exc:  # the orchestrator must always get an outcome
        result = {"reason": "error", "exit_code": None, "error": repr(exc)}
    _write_result(spec["result"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
