"""Helpers for executor tests: real repositories, a real remote, real Dask processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
DASK = str(Path(sys.executable).parent / "dask")


def env(home: Path) -> dict[str, str]:
    """An environment for orchestree and Dask processes: our HOME, no inherited git."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DASK_"))}
    return {**base, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, **IDENTITY})  # fmt: skip
    return proc.stdout.strip()


def make_repo(root: Path, executor: str = "", defaults: str = "") -> Path:
    """A repository with two files, initialised, with a bare remote `origin` beside it."""
    root.mkdir(parents=True)
    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "test@example.invalid")
    (repo / "README.md").write_text("hello\n")
    (repo / "shared.txt").write_text("one\ntwo\nthree\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    git(repo, "remote", "add", "origin", str(remote))
    # The config stays out of git, so local and Dask runs start from the same tree.
    config = f'[defaults]\nagent = "shell"\nmax_parallel = 2\n{defaults}\n'
    if executor:
        config += f"[executor]\n{executor}\n"
    (repo / "orchestree.toml").write_text(config)
    with (repo / ".git" / "info" / "exclude").open("a") as fh:
        fh.write("/orchestree.toml\n")
    orchestree(repo, root, "init")
    return repo


def orchestree(
    repo: Path, home: Path, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI (`--repo` right after the command); exit 0 or 1 unless check=False."""
    argv = [sys.executable, "-m", "orchestree", args[0], "--repo", str(repo), *args[1:]]
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env(home), timeout=timeout, check=False
    )
    if check and proc.returncode not in (0, 1):
        raise AssertionError(f"orchestree {args} exit {proc.returncode}:\n{proc.stderr}")
    return proc


def start(repo: Path, home: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "orchestree", args[0], "--repo", str(repo), *args[1:]]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(home)
    )


def add_lanes(repo: Path, home: Path, lanes: dict[str, Any]) -> None:
    lanes_file = repo.parent / "lanes.json"
    lanes_file.write_text(json.dumps(lanes))
    orchestree(repo, home, "add-lane", "--from", str(lanes_file))


def counted(counter: Path, lane: str, *tasks: str) -> list[str]:
    """The lane's tasks, after one that records each run in a file outside the repo."""
    return [f"echo $ORCHESTREE_ATTEMPT >> {counter}/{lane}", *tasks]


def dag(counter: Path) -> dict[str, Any]:
    """Eight lanes: a dependency, a failure (and a lane it blocks), a conflicting pair."""
    counter.mkdir(parents=True, exist_ok=True)
    result = "mkdir -p docs/_generated/report && echo done > docs/_generated/report/report.md"
    return {
        "base": {"tasks": counted(counter, "base", "echo base > base.txt", "sleep 0.5")},
        "uses-base": {"depends_on": ["base"],
                      "tasks": counted(counter, "uses-base", "cat base.txt > used.txt")},
        "fails": {"tasks": counted(counter, "fails", "echo half > half.txt", "exit 3")},
        "after-fail": {"depends_on": ["fails"], "tasks": counted(counter, "after-fail")},
        "edit-x": {"tasks": counted(counter, "edit-x", "printf 'one\\nX\\nthree\\n' > shared.txt")},
        "edit-y": {"tasks": counted(counter, "edit-y", "printf 'one\\nY\\nthree\\n' > shared.txt")},
        "commits": {"tasks": counted(counter, "commits", "echo c > c.txt",
                                     "git add c.txt && git commit -q -m 'agent commit'")},
        "report": {"priority": "high", "tasks": counted(counter, "report", result)},
    }  # fmt: skip


def statuses(repo: Path, home: Path) -> dict[str, str]:
    data = json.loads(orchestree(repo, home, "status", "--json").stdout)
    return {k: v["status"] for k, v in data["lanes"].items()}


def unexpected(repo: Path, home: Path, expected: dict[str, str]) -> str:
    """What to read when statuses differ from `expected`: each differing lane's
    status, error and the end of its agent's log, and the end of the events."""
    found = statuses(repo, home)
    lanes = tracker(repo)["lanes"]
    lines = [f"statuses {found}"]
    for lane in sorted(k for k in found if found[k] != expected.get(k)):
        entry = {k: lanes[lane].get(k) for k in ("status", "error", "attempts", "host", "worker")}
        log = repo / ".orchestration" / "logs" / f"agent-{lane}.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
        lines += [f"{lane}: {entry}", f"{lane} log: {tail}"]
    events = repo / ".orchestration" / "events.jsonl"
    lines.append("events: " + (events.read_text()[-3000:] if events.exists() else "(none)"))
    return "\n".join(lines)


def tracker(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / ".orchestration" / "tracker.json").read_text())
    return data


def trees(repo: Path, lanes: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for lane in lanes:
        argv = ["git", "rev-parse", "--verify", "-q", f"lane-{lane}^{{tree}}"]
        proc = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
        found[lane] = proc.stdout.strip() or None
    return found


def runs(counter: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().split()) for p in counter.iterdir()}


def alive(pid: int) -> bool:
    """True when `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def supervisor_of(pid: int) -> int:
    """The orchestree supervisor above `pid`."""
    while pid > 1:
        if b"orchestree.executors.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
        pid = parent(pid)
    raise AssertionError("no supervisor above the agent")


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


@contextlib.contextmanager
def dask_cluster(root: Path, workers: int = 2, allowed_failures: str | None = "0") -> Iterator[str]:
    """`dask scheduler` and `dask worker`s as separate processes on loopback, each
    worker with its own HOME (so its own reference cache). Yields the address."""
    root.mkdir(parents=True, exist_ok=True)
    sched_env = env(root)
    if allowed_failures is not None:
        sched_env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = allowed_failures
    info = root / "scheduler.json"
    argv = [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    argv += ["--scheduler-file", str(info)]
    procs = [_spawn(argv, sched_env, root / "scheduler.log")]
    try:
        wait_for(info.exists, 30, "the Dask scheduler")
        address = wait_for(
            lambda: json.loads(info.read_text() or "{}").get("address"), 10, "its address"
        )
        for n in range(workers):
            home = root / f"worker{n}"
            home.mkdir()
            argv = [DASK, "worker", address, "--nworkers", "1", "--nthreads", "1"]
            argv += ["--host", "127.0.0.1", "--no-dashboard"]
            argv += ["--local-directory", str(home / "dask")]
            procs.append(_spawn(argv, env(home), home / "worker.log"))
        log = root / "scheduler.log"
        wait_for(
            lambda: len(re.findall("Register worker", log.read_text())) >= workers,
            60,
            f"{workers} Dask workers to register",
        )
        yield str(address)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _spawn(argv: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(argv, env=environ, stdout=out, stderr=out, start_new_session=True)
