"""Run a real agent CLI through its orchestree preset, as a new user would meet it:
a lane worktree of a fresh repository, a fresh HOME without credentials, no API key
in the environment, stdin from /dev/null, its own process group, a timeout.

Shared by `scripts/record-agents.py` (which writes tests/agents/data/) and the tests
in tests/agents/ (which check the presets against the real programs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestree.agents import AgentPreset, LaunchContext, build_prompt, get_agent
from orchestree.config import AgentConfig, Config
from orchestree.models import Lane

CACHE = Path(os.environ.get("ORCHESTREE_AGENTS_CACHE", Path.home() / ".cache/orchestree-agents"))
AGENTS_BIN = CACHE / "bin"
CLIS = ("claude", "codex", "gemini", "aider")
LANE_ID = "demo"
TASKS = ["Add a line saying hello to README.md", "Write a short report of what you did"]
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# The orchestree installed beside the Python running the tests (make's .venv).
ORCHESTREE = str(Path(sys.executable).parent / "orchestree")


@dataclass
class Sandbox:
    """A repository with one lane worktree, and a HOME that has never logged in."""

    root: Path
    repo: Path
    worktree: Path
    home: Path

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        return {**clean_env(self.root, self.home), **extra}


def clean_env(root: Path, home: Path) -> dict[str, str]:
    """A clean environment: no key or token of any provider can leak in."""
    return {
        "HOME": str(home),
        "PATH": f"{AGENTS_BIN}:{SYSTEM_PATH}",
        "LANG": "C.UTF-8",
        "TMPDIR": str(root / "tmp"),
    }


@contextmanager
def _scratch_repo(files: dict[str, str]) -> Iterator[tuple[Path, Path, Path]]:
    """(root, repo, home): a committed repository on `main` and a fresh HOME that only
    holds a git identity, in a scratch folder removed afterwards."""
    # Not under /tmp: Codex refuses to set up its helpers below a temporary folder,
    # which no real user's HOME is.
    (CACHE / "scratch").mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE / "scratch"))
    try:
        home, repo = root / "home", root / "repo"
        for folder in (home, repo, root / "tmp"):
            folder.mkdir()
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Lane Tester\n\temail = lane@example.com\n"
        )
        env = {"HOME": str(home), "PATH": SYSTEM_PATH}
        _git(repo, env, "init", "-q", "-b", "main")
        for name, text in {"README.md": "# demo\n", **files}.items():
            (repo / name).write_text(text)
        _git(repo, env, "add", "-A")
        _git(repo, env, "commit", "-q", "-m", "init")
        yield root, repo, home
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    with _scratch_repo({}) as (root, repo, home):
        env = {"HOME": str(home), "PATH": SYSTEM_PATH}
        worktree = repo / ".worktrees" / f"agent-{LANE_ID}"
        _git(repo, env, "worktree", "add", "-q", "-b", f"lane-{LANE_ID}", str(worktree))
        (repo / ".orchestration").mkdir()
        yield Sandbox(root=root, repo=repo, worktree=worktree, home=home)


@dataclass
class Project:
    """A repository initialised for orchestree, with lanes for the real CLIs, driven
    through the installed `orchestree` program as a user would."""

    root: Path
    repo: Path
    home: Path

    def env(self) -> dict[str, str]:
        return clean_env(self.root, self.home)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ORCHESTREE, *args, "--repo", str(self.repo)], env=self.env(), text=True,
            capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False,
        )  # fmt: skip

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [ORCHESTREE, *args, "--repo", str(self.repo)], env=self.env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def tracker(self) -> dict[str, Any]:
        text = (self.repo / ".orchestration" / "tracker.json").read_text(encoding="utf-8")
        data: dict[str, Any] = json.loads(text)
        return data

    def log(self, lane_id: str) -> str:
        return (self.repo / ".orchestration" / "logs" / f"agent-{lane_id}.log").read_text()

    def git(self, *args: str) -> str:
        return _git(self.repo, self.env(), *args)


@contextmanager
def project(config: str, lanes: dict[str, dict[str, Any]]) -> Iterator[Project]:
    """`orchestree.toml` = `config`, then `init` and `add-lane --from` the `lanes`."""
    with _scratch_repo({"orchestree.toml": config}) as (root, repo, home):
        proj = Project(root, repo, home)
        spec = root / "lanes.json"
        spec.write_text(json.dumps(lanes))
        for args in (("init",), ("add-lane", "--from", str(spec))):
            done = proj.run(*args)
            assert done.returncode == 0, done.stdout + done.stderr
        yield proj


def _git(cwd: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


@dataclass
class Run:
    cli: str
    argv: list[str]
    prompt: str
    output: str
    exit_code: int | None  # None: we ended it (timeout or a fatal line)
    duration_s: float
    ended_because: str | None
    leftovers: list[str] = field(default_factory=list)  # `git status --ignored` lines
    version: str = ""


def preset_for(
    cli: str,
    model: str | None = None,
    args: list[str] | None = None,
    permission_mode: str | None = None,
) -> AgentPreset:
    settings = AgentConfig(model=model, args=args or [], permission_mode=permission_mode)
    return get_agent(cli, Config(agents={cli: settings}))


def run_real(
    box: Sandbox,
    preset: AgentPreset,
    *,
    timeout_s: float,
    budget_usd: float | None = None,
    lane: Lane | None = None,
) -> Run:
    """One lane attempt the way the runner makes it, ended early on a fatal line."""
    lane = lane or Lane(name="Demo lane", tasks=TASKS, budget_usd=budget_usd)
    ctx = LaunchContext(
        lane_id=LANE_ID,
        lane=lane,
        worktree=box.worktree,
        branch=f"lane-{LANE_ID}",
        tracker=box.repo / ".orchestration" / "tracker.json",
        prompt_file=box.repo / ".orchestration" / f"prompt-{LANE_ID}.md",
    )
    prompt = build_prompt(ctx)
    ctx.prompt_file.write_text(prompt)
    inv = preset.invocation(ctx, prompt)
    env = box.env(inv.env)
    start = time.monotonic()
    proc = subprocess.Popen(
        inv.argv,
        cwd=box.worktree,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []
    fatal: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            reason = preset.fatal_from_line(line)
            if reason and not fatal:
                fatal.append(reason)
                _kill_group(proc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    duration = time.monotonic() - start
    killed = proc.returncode < 0
    ended = (fatal[0] if fatal else f"timeout after {timeout_s:g} s") if killed else None
    status = _git(box.worktree, env, "status", "--porcelain", "--ignored", "--untracked-files=all")
    return Run(
        cli=preset.name,
        argv=inv.argv,
        prompt=prompt,
        output="".join(lines),
        exit_code=None if killed else proc.returncode,
        duration_s=round(duration, 2),
        ended_because=ended,
        leftovers=status.splitlines(),
        version=version_of(preset.executable, env, box.worktree),
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def version_of(program: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        [program, "--version"], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[-1].strip() if lines else ""


def available() -> list[str]:
    return [cli for cli in CLIS if (AGENTS_BIN / cli).exists()]
