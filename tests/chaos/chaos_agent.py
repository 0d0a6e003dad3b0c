"""The chaos suite's fake agent: `python chaos_agent.py LANE`, run in the lane's worktree.

What it does comes from `$CHAOS_DIR/plan.json` (the seed's plan, written by the
harness): sleep, write files, commit some of them, leave the rest uncommitted, and
perhaps act like a hostile agent. Everything it does is appended, one JSON line per
event, to `$CHAOS_DIR/records/<lane>.jsonl` (outside the repository, O_APPEND): its
start (pid, parent, attempt), each commit's SHA, its end. For the whole run it holds
an exclusive flock on `$CHAOS_DIR/locks/<lane>.lock`; the kernel drops it when the
process dies however it dies, so a second agent of the same lane that starts while
the first still runs finds it taken and records an `overlap`.
"""

from __future__ import annotations

import fcntl
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def record(lane: str, event: str, **detail: Any) -> None:
    line = {"ev": event, "pid": os.getpid(), "t": time.monotonic(), **detail}
    path = Path(os.environ["CHAOS_DIR"]) / "records" / f"{lane}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL
    ).stdout.strip()


def hostile(lane: str, action: str) -> None:
    """What a hostile agent tries; the run must end cleanly whatever it does."""
    if action == "kill-supervisor-parent":
        supervisor = os.getppid()
        with open(f"/proc/{supervisor}/stat", encoding="ascii") as fh:
            parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{parent}/cmdline", "rb") as fh:
            argv = fh.read().replace(b"\0", b" ").decode()
        record(lane, "hostile", action=action, target=parent, argv=argv)
        os.kill(parent, signal.SIGKILL)
    elif action == "tracker-garbage":
        helper = Path("access_tracker.py")
        tracker = os.environ["ORCHESTREE_TRACKER"]
        for garbage in ("{not json", "[1, 2]", '"a string"', "null", "{" * 5000):
            proc = subprocess.run(
                [sys.executable, str(helper), tracker, garbage],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            record(lane, "hostile", action=action, code=proc.returncode)
    elif action == "setsid-daemon":
        # A descendant that leaves the agent's process group and would outlive it.
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        record(lane, "hostile", action=action)


def run_script(lane: str, script: str) -> int:
    """A hostile set's agent (tests/hostile_agents.py), run in this process (so the
    records name the pid orchestree started) with its lane id as argv[1]."""
    record(lane, "hostile", action=Path(script).stem)
    sys.argv = [script, lane]
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    attempt = int(os.environ.get("ORCHESTREE_ATTEMPT", "0"))
    if 'git("commit"' in Path(script).read_text():  # its own commit must stay reachable
        record(lane, "commit", sha=git("rev-parse", "HEAD"), attempt=attempt)
    record(lane, "end", attempt=attempt, code=code)
    return code


def main(lane: str) -> int:
    plan = json.loads((Path(os.environ["CHAOS_DIR"]) / "plan.json").read_text())["lanes"][lane]
    lock = os.open(Path(os.environ["CHAOS_DIR"]) / "locks" / f"{lane}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        record(lane, "overlap")
        fcntl.flock(lock, fcntl.LOCK_EX)
    attempt = int(os.environ.get("ORCHESTREE_ATTEMPT", "0"))
    record(lane, "start", ppid=os.getppid(), attempt=attempt)
    if plan.get("script"):
        return run_script(lane, plan["script"])
    if plan.get("hostile"):
        hostile(lane, plan["hostile"])
    folder = Path(f"chaos-{lane}")
    folder.mkdir(exist_ok=True)
    for i, step in enumerate(plan["steps"]):
        time.sleep(step["sleep"])
        name = folder / f"a{attempt}-s{i}.txt"
        name.write_text(f"lane {lane} attempt {attempt} step {i}\n")
        if step["commit"]:
            git("add", str(name))
            git("commit", "-q", "-m", f"chaos: {lane} attempt {attempt} step {i}")
            record(lane, "commit", sha=git("rev-parse", "HEAD"), attempt=attempt)
    record(lane, "end", attempt=attempt, code=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
