"""One attempt of one lane: its worktree, its agent under a supervisor, its outcome.

`prepare` makes (or reuses) the lane's worktree at its start commit; `launch` starts
the per-lane supervisor that runs the agent; `collect` commits whatever the agent
left uncommitted (so no work is lost), records head, changed files and results, and
reads the agent's own verdict from its output.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestree import agents, git
from orchestree.errors import UserError
from orchestree.layout import branch, results_dir
from orchestree.models import Lane
from orchestree.orchestrator import Repo
from orchestree.tracker import process_start_time

LOG_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class StartPoint:
    commit: str | None
    conflicts: list[str]


def start_point(root: Path, base: str, dep_heads: list[tuple[str, str]]) -> StartPoint:
    """The base commit with the dependencies' branches merged in, computed in memory."""
    candidate = base
    for dep, head in dep_heads:
        if git.is_ancestor(root, head, candidate):
            continue
        if git.is_ancestor(root, candidate, head):
            candidate = head
            continue
        merged = git.merge_tree(root, candidate, head)
        if merged.tree is None:
            return StartPoint(None, merged.conflicts)
        candidate = git.commit_tree(
            root, merged.tree, [candidate, head], f"orchestree: start from dependency {dep}"
        )
    return StartPoint(candidate, [])


def ownership_problem(repo: Repo, lane_id: str, lane: Lane) -> str | None:
    """Why the lane's worktree path or branch cannot be used, if they are not ours."""
    root, path, name = repo.root, repo.layout.worktree(lane_id), branch(lane_id)
    registered = {w.path.resolve(): w for w in git.worktree_list(root)}
    if path.exists() and path.resolve() not in registered:
        return (
            f"{path} exists and is not a worktree of this repository; "
            "move it away (orchestree never overwrites it)"
        )
    wt = registered.get(path.resolve())
    if wt is not None and wt.branch != name:
        return f"{path} is a worktree on {wt.branch or 'a detached HEAD'}, not on {name}"
    head = git.head_commit(root, f"refs/heads/{name}")
    if head is not None:
        mine = lane.start_commit is not None and git.is_ancestor(root, lane.start_commit, head)
        if not mine:
            return (
                f"branch {name} already exists with commits orchestree did not make; "
                f"rename or delete it (`git branch -m {name} <new>`) — it is never overwritten"
            )
    return None


def prepare(repo: Repo, lane_id: str, lane: Lane, start: str) -> bool:
    """Create the lane's worktree at `start`, or reuse ours; True when it is new."""
    problem = ownership_problem(repo, lane_id, lane)
    if problem:
        raise UserError(problem)
    path, name = repo.layout.worktree(lane_id), branch(lane_id)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if git.branch_exists(repo.root, name):  # ours, from an earlier attempt: keep its work
        with git.admin_lock(repo.root):
            git.run("worktree", "prune", cwd=repo.root)
            git.run("worktree", "add", str(path), name, cwd=repo.root)
    else:
        git.worktree_add(repo.root, path, name, start)
    copy_includes(repo.root, path)
    return True


def copy_includes(root: Path, worktree: Path) -> list[str]:
    """Copy files matching `.worktreeinclude` patterns (e.g. `.env`) into a new worktree."""
    spec = root / ".worktreeinclude"
    if not spec.exists():
        return []
    patterns = [
        line.strip()
        for line in spec.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    skip = {".git", ".orchestration", ".worktrees", "node_modules", ".venv"}
    copied: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and Path(folder, d) != worktree]
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root)
            if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns):
                target = worktree / rel
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(os.path.join(folder, name), target)
                    copied.append(rel)
    return copied


def place_helper(repo: Repo, worktree: Path) -> str:
    """Put access_tracker.py at the worktree root unless the repo tracks its own."""
    tracked = git.run("ls-files", "--error-unmatch", "access_tracker.py",
                      cwd=worktree, check=False).returncode == 0  # fmt: skip
    if tracked:
        return str(repo.layout.helper)
    target = worktree / "access_tracker.py"
    shutil.copyfile(repo.layout.helper, target)
    return "access_tracker.py"


@dataclass(frozen=True)
class Launched:
    pid: int
    pid_started: float
    result: Path
    log_offset: int
    process: subprocess.Popen[bytes] | None


def launch(
    repo: Repo,
    lane_id: str,
    lane: Lane,
    attempt: int,
    port: int,
    run_setup: bool,
) -> Launched:
    """Start the supervisor that runs this lane's agent in its worktree."""
    config, layout = repo.config, repo.layout
    worktree = layout.worktree(lane_id)
    helper = place_helper(repo, worktree)
    runs = layout.orch / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    prompt_file = runs / f"{lane_id}.prompt.md"
    agent_name = lane.agent or config.defaults.agent
    agent = agents.get_agent(agent_name, config, where=f"lane {lane_id!r}")
    ctx = agents.LaunchContext(
        lane_id,
        lane,
        worktree,
        branch(lane_id),
        layout.tracker.resolve(),
        prompt_file.resolve(),
        helper_in_worktree=helper == "access_tracker.py",
    )
    prompt = lane.prompt or agents.build_prompt(ctx)
    prompt_file.write_text(prompt, encoding="utf-8")
    call = agent.invocation(ctx, prompt)
    env = {
        **git.git_env(call.env),
        "ORCHESTREE_PORT": str(port),
        "ORCHESTREE_ATTEMPT": str(attempt),
    }
    log = layout.log(lane_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"--- orchestree: lane {lane_id} attempt {attempt}: {call.argv[0]}\n".encode())
        offset = fh.tell()  # the agent's own output starts here
    result = runs / f"{lane_id}.{attempt}.result.json"
    with contextlib.suppress(FileNotFoundError):
        result.unlink()
    spec: dict[str, Any] = {
        "argv": call.argv,
        "env": env,
        "cwd": str(worktree),
        "log": str(log),
        "timeout_s": lane.timeout_s or config.defaults.timeout_s,
        "grace_s": config.defaults.kill_grace_s,
        "result": str(result),
        "setup": config.worktree.setup if run_setup else "",
    }
    spec_file = runs / f"{lane_id}.{attempt}.spec.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestree.supervisor", str(spec_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches us, and we decide
    )
    started = process_start_time(proc.pid) or 0.0
    return Launched(proc.pid, started, result, offset, proc)


@dataclass(frozen=True)
class Collected:
    ok: bool
    reason: str
    exit_code: int | None
    error: str | None
    auth_failure: bool
    head: str | None
    changed: list[str]
    results: list[str]
    session_id: str | None = None
    num_turns: int | None = None
    cost_usd: float | None = None


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def collect(
    repo: Repo,
    lane_id: str,
    lane: Lane,
    result: dict[str, Any],
    log_offset: int,
    fatal: str | None = None,
) -> Collected:
    """Commit what the agent left, then decide the attempt's outcome."""
    worktree = repo.layout.worktree(lane_id)
    head: str | None = None
    changed: list[str] = []
    if worktree.exists():
        git.commit_all(
            worktree,
            f"orchestree: work left uncommitted by lane {lane_id} (attempt {lane.attempts})",
        )
        head = git.head_commit(worktree)
        if head and lane.start_commit:
            changed = git.changed_files(repo.root, lane.start_commit, head)
    prefix = results_dir(lane_id) + "/"
    results = sorted({p for p in changed if p.startswith(prefix)} | set(lane.results))
    reason = str(result.get("reason", "error"))
    code = result.get("exit_code")
    base = Collected(False, reason, code, None, False, head, changed, results)
    agent = agents.get_agent(lane.agent or repo.config.defaults.agent, repo.config)
    output = _log_since(repo.layout.log(lane_id), log_offset)
    if fatal is not None:  # we ended an agent that waited for a person: its output decides
        outcome = agent.classify(output, -15 if code is None else int(code))
        error = outcome.error or fatal
        return _outcome(base, False, error, outcome)
    if reason == "timeout":
        timeout = lane.timeout_s or repo.config.defaults.timeout_s
        outcome = agent.classify(output, -15 if code is None else int(code))
        said = f": {outcome.error}" if outcome.error else ""
        return _outcome(base, False, f"timed out after {timeout:g} s{said}", outcome)
    if reason in ("cancelled", "interrupted", "parent-died"):
        return _with(base, error=f"cancelled ({reason})")
    if reason == "setup-failed":
        return _with(base, error=f"worktree setup failed (exit {code}); see the log")
    if reason != "exited" or code is None:
        return _with(base, error=str(result.get("error") or "the supervisor failed"))
    outcome = agent.classify(output, int(code))
    return _outcome(base, outcome.ok, outcome.error, outcome)


def _outcome(base: Collected, ok: bool, error: str | None, outcome: agents.Outcome) -> Collected:
    return Collected(
        ok,
        base.reason,
        base.exit_code,
        error,
        outcome.auth_failure,
        base.head,
        base.changed,
        base.results,
        outcome.session_id,
        outcome.num_turns,
        outcome.cost_usd,
    )


def _with(base: Collected, error: str) -> Collected:
    return Collected(
        False, base.reason, base.exit_code, error, False, base.head, base.changed, base.results
    )


def _log_since(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - 4 * LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    # Leave out what the supervisor itself wrote: only the agent's words are classified.
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("orchestree: ")
    )
