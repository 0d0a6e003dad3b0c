"""Shared helpers for the execution tests: real repositories, real agents, the real CLI.

Every test builds a git repository in `tmp_path` with a fixed identity, writes its
fake agents as small scripts, and drives orchestree through `orchestree.cli.main`
(in-process) or the installed `orchestree` program (a subprocess, when the test must
signal or kill the orchestrator).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestree import procs
from orchestree.cli import main

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
}
PYTHON = sys.executable
ORCHESTREE = str(Path(sys.executable).parent / "orchestree")

BASE_CONFIG = """\
[defaults]
agent = "shell"
kill_grace_s = 0.5
max_parallel = 4
"""


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=os.environ
    )
    return proc.stdout.strip()


def make_repo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: str = BASE_CONFIG,
    files: dict[str, str] | None = None,
) -> Path:
    """A committed repository on `main`, initialised for orchestree."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(key, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "README.md").write_text("# test repo\n", encoding="utf-8")
    if config:
        (repo / "orchestree.toml").write_text(config, encoding="utf-8")
    for rel, text in (files or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    assert cli(repo, "init").code == 0
    return repo


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def cli(repo: Path, *args: str) -> Result:
    """Run `orchestree ARGS --repo REPO` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--repo", str(repo)])
    return Result(code, out.getvalue(), err.getvalue())


def spawn(repo: Path, *args: str) -> subprocess.Popen[str]:
    """Start the installed `orchestree ARGS --repo REPO` as a subprocess."""
    return subprocess.Popen(
        [ORCHESTREE, *args, "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def add_lanes(repo: Path, lanes: dict[str, dict[str, Any]]) -> None:
    spec = repo.parent / "lanes.json"
    spec.write_text(json.dumps(lanes), encoding="utf-8")
    result = cli(repo, "add-lane", "--from", str(spec))
    assert result.code == 0, result.err


def tracker(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (repo / ".orchestration" / "tracker.json").read_text(encoding="utf-8")
    )
    return data


def statuses(repo: Path) -> dict[str, str]:
    return {k: v["status"] for k, v in tracker(repo)["lanes"].items()}


def write_script(path: Path, body: str) -> Path:
    """A Python agent script; `body` runs with os, sys, time, json, subprocess, Path."""
    header = "import json, os, signal, subprocess, sys, time\nfrom pathlib import Path\n"
    path.write_text(header + body, encoding="utf-8")
    return path


def agent_config(name: str, script: Path, extra: str = "", defaults: str = "") -> str:
    """orchestree.toml with a custom agent `name` running `script {lane}`."""
    return (
        BASE_CONFIG
        + defaults
        + f'\n[agents.{name}]\ncommand = ["{PYTHON}", "{script}", "{{lane}}"]\n'
        + extra
    )


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")


def recorded_pid(repo: Path, lane_id: str, timeout: float = 10.0) -> int:
    """The pid of the lane's supervisor once the tracker names it: `execute` writes a
    started lane's pid with its next tracker write, within 0.1 s (lanebook.py)."""

    def pid() -> int | None:
        found = tracker(repo)["agents"].get(f"agent-{lane_id}", {}).get("pid")
        return found if isinstance(found, int) else None

    wait_for(lambda: pid() is not None, timeout, f"the tracker to name {lane_id}'s pid")
    found = pid()
    assert found is not None
    return found


def process_alive(pid: int, ticks: int | None = None) -> bool:
    """Is `pid` a live (non-zombie) process — the one that started at `ticks` since boot?"""
    found = procs.identity(pid)
    return found is not None and (ticks is None or found.ticks == ticks)


def count_runs(folder: Path, lane_id: str) -> int:
    """How many times the counting agent ran for `lane_id` (one line per run)."""
    path = folder / f"{lane_id}.runs"
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def counting_agent(folder: Path, sleep_s: float = 0.0, fail_first: int = 0) -> Path:
    """An agent that appends a line per run to FOLDER/<lane>.runs (outside the repo),
    sleeps, writes a file named after its lane, and fails its first `fail_first` runs."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_script(
        folder / "counting_agent.py",
        f"""
lane = sys.argv[1]
runs = Path({str(folder)!r}) / f"{{lane}}.runs"
with runs.open("a") as fh:
    fh.write(f"{{os.getpid()}} {{time.time()}}\\n")
n = len(runs.read_text().splitlines())
time.sleep({sleep_s})
Path(f"{{lane}}.txt").write_text(f"lane {{lane}} run {{n}}\\n")
sys.exit(1 if n <= {fail_first} else 0)
""",
    )
