"""One attempt of one lane: its worktree, its agent under a supervisor, its outcome.

`prepare` makes (or reuses) the lane's worktree at its start commit; `launch` starts
the per-lane supervisor that runs the agent; `commit_leftovers` commits whatever the
agent left uncommitted, so no work is lost. The local executor drives these; what the
outcome means is `outcome.py`'s to say, for local and remote lanes alike.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestree import agents, git, procs, sandbox, worktree_guard, worktree_pool
from orchestree.agents.prompt import rework_env, rework_section
from orchestree.config import Config
from orchestree.errors import UserError
from orchestree.executors import supervisor
from orchestree.initrepo import install_helper
from orchestree.layout import branch
from orchestree.models import Lane
from orchestree.repo import Repo

LOG_TAIL_BYTES = 64 * 1024


def ownership_problem(
    repo: Repo, lane_id: str, lane: Lane, heads: dict[str, str] | None = None
) -> str | None:
    """Why the lane's worktree path or branch cannot be used, if they are not ours.

    `heads` (branch -> commit, read once for many lanes) spares a git call per lane;
    a lane with neither a folder nor a branch yet is fine without asking git more."""
    root, path, name = repo.root, repo.layout.worktree(lane_id), branch(lane_id)
    if heads is not None and name not in heads and not path.exists():
        return None
    registered = {w.path.resolve(): w for w in git.worktree_list(root)}
    if path.exists() and path.resolve() not in registered:
        return (
            f"{path} exists and is not a worktree of this repository; "
            "move it away (orchestree never overwrites it)"
        )
    wt = registered.get(path.resolve())
    if wt is not None and wt.branch != name:
        return f"{path} is a worktree on {wt.branch or 'a detached HEAD'}, not on {name}"
    head = heads.get(name) if heads is not None else git.head_commit(root, f"refs/heads/{name}")
    if head is not None:
        mine = lane.start_commit is not None and git.is_ancestor(root, lane.start_commit, head)
        if not mine:
            return (
                f"branch {name} already exists with commits orchestree did not make; "
                f"rename or delete it (`git branch -m {name} <new>`) — it is never overwritten"
            )
    return None


def prepare(repo: Repo, lane_id: str, lane: Lane, start: str) -> bool:
    """Reuse the lane's worktree, or say it is new (True): the lane's supervisor then
    registers it (`worktree add`, under the administration lock shared by every
    process) and populates it, in parallel with the other lanes, off the orchestrator's
    path. A new path on a new branch needs no ownership check: git refuses to create a
    branch that exists or to use a folder that is not empty.
    """
    path, name = repo.layout.worktree(lane_id), branch(lane_id)
    if not path.exists() and not git.branch_exists(repo.root, name):
        path.parent.mkdir(parents=True, exist_ok=True)
        return True
    problem = ownership_problem(repo, lane_id, lane)
    if problem:
        raise UserError(problem)
    if os.path.lexists(path):  # an earlier attempt's: still ours, or the agent's now?
        check = worktree_guard.verify(repo.root, path, name)
        if check.problem:
            raise UserError(f"{check.problem}; check {path} and remove it, then retry")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with git.admin_lock(repo.root):  # ours, from an earlier attempt: keep its work
        git.run("worktree", "prune", cwd=repo.root)
        git.run("worktree", "add", str(path), name, cwd=repo.root)
    return False


def include_files(root: Path, worktrees: Path) -> list[str]:
    """Files matching `.worktreeinclude` patterns (e.g. `.env`), relative to `root`,
    outside the lane worktrees' folder `worktrees`."""
    spec = root / ".worktreeinclude"
    if not spec.exists():
        return []
    patterns = [
        line.strip()
        for line in spec.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    skip = {".git", ".orchestration", ".worktrees", "node_modules", ".venv"}
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and Path(folder, d) != worktrees]
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root)
            if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns):
                found.append(rel)
    return sorted(found)


@functools.lru_cache(maxsize=256)
def _tracks_helper(root: Path, commit: str) -> bool:
    # Commits never change, so the answer for (root, commit) is asked once.
    return git.run("cat-file", "-e", f"{commit}:access_tracker.py", cwd=root,
                   check=False).returncode == 0  # fmt: skip


@dataclass(frozen=True)
class Launched:
    """A started supervisor. `identity` is None when it is not known (gone at once, or
    recorded by an older orchestree); `pidfd`, when the kernel gave one, turns readable
    the moment it exits (the owner closes it)."""

    pid: int
    identity: procs.Identity | None
    result: Path
    log_offset: int
    process: subprocess.Popen[bytes] | None
    pidfd: int | None = None

    @property
    def agent_file(self) -> Path:
        """Where the supervisor records the agent's pid, beside the result."""
        return self.result.with_name(self.result.name.replace(".result.", ".agent."))


def launch(
    repo: Repo,
    lane_id: str,
    lane: Lane,
    attempt: int,
    port: int,
    new: bool,
    includes: list[str],
    spawner: Spawner | None = None,
    base: str = "",
) -> Launched:
    """Start the supervisor that prepares this lane's worktree (when `new`: populate,
    `includes`, setup) and runs its agent there, then commits what it left."""
    config, layout = repo.config, repo.layout
    worktree = layout.worktree(lane_id)
    start = lane.start_commit or ""
    install_helper(layout)  # restored if anything changed it since: it is pre-approved
    # A repository that tracks its own access_tracker.py keeps it; the prompt then
    # points at orchestree's copy.
    tracked = bool(start) and _tracks_helper(repo.root, start)
    helper = str(layout.helper) if tracked else "access_tracker.py"
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
        sandboxed=sandbox_kind(config, lane) != "none",
    )
    prompt = (lane.prompt or agents.build_prompt(ctx)) + rework_section(repo.root, lane)
    prompt_file.write_text(prompt, encoding="utf-8")
    call = agent.invocation(ctx, prompt)
    env = {
        **git.git_env({**call.env, **rework_env(repo.root, lane)}),
        "ORCHESTREE_PORT": str(port),
        "ORCHESTREE_ATTEMPT": str(attempt),
    }
    log = layout.log(lane_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"--- orchestree: lane {lane_id} attempt {attempt}: {call.argv[0]}\n".encode())
        offset = fh.tell()  # the agent's own output starts here
    result = runs / f"{lane_id}.{attempt}.result.json"
    agent_file = runs / f"{lane_id}.{attempt}.agent.json"
    for stale in (result, agent_file):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    # A spare worktree of `[worktree] pool` to claim instead of making one.
    pool = worktree_pool.plan(layout.worktrees, base or start, config.worktree) if new else None
    spec: dict[str, Any] = {
        "argv": call.argv,
        "env": env,
        "cwd": str(worktree),
        "log": str(log),
        "timeout_s": lane.timeout_s or config.defaults.timeout_s,
        "grace_s": config.defaults.kill_grace_s,
        "result": str(result),
        "agent_file": str(agent_file),
        "setup": config.worktree.setup if new else "",
        # What setup left, kept for every attempt in this worktree: never committed.
        "setup_snapshot": str(runs / f"{lane_id}.setup.json"),
        "register": {"branch": branch(lane_id), "start": start} if new else None,
        "root": str(repo.root),
        "includes": includes if new else [],
        "helper": "" if tracked else str(layout.helper),
        "start_commit": start,
        "commit_message": leftover_message(lane_id, attempt),
        "branch": branch(lane_id),
        "lane_id": lane_id,
        "attempt": attempt,
        "keep_out": keep_out(repo, tracked, includes),
        "sandbox": sandbox_plan(repo, lane, agent.writable_folders),
        "share": share_plan(repo, base or start) if new and config.worktree.setup else None,
        "pool": pool,
    }
    spec_file = runs / f"{lane_id}.{attempt}.spec.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    pid, proc = (spawner or Spawner(fork_server=False)).start(spec_file)
    ident = procs.identity(pid)
    pidfd = procs.open_pidfd(ident) if ident is not None and proc is None else None
    return Launched(pid, ident, result, offset, proc, pidfd)


class Spawner:
    """Starts lane supervisors, each in a session of its own (Ctrl-C in the terminal
    reaches the orchestrator, which decides). With `fork_server`, one warm Python is
    started once and forks a supervisor per lane (about 1 ms instead of tens for a new
    interpreter); if it cannot be used, each supervisor is started as a process."""

    def __init__(self, fork_server: bool = True) -> None:
        self.fork_server = fork_server
        self._server: subprocess.Popen[bytes] | None = None

    def start(self, spec_file: Path) -> tuple[int, subprocess.Popen[bytes] | None]:
        server = self._ensure_server()
        if server is not None and server.stdin is not None and server.stdout is not None:
            try:
                # One JSON string a line: no byte of the path can split the protocol.
                server.stdin.write(json.dumps(str(spec_file)).encode() + b"\n")
                server.stdin.flush()
                answer = server.stdout.readline().strip()
                if answer.isdigit():
                    return int(answer), None
            except OSError:
                pass
            self.fork_server = False  # broken: fall back for the rest of the run
            self.close()
        proc: subprocess.Popen[bytes] = procs.spawn(
            [sys.executable, "-m", procs.SUPERVISOR, str(spec_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc.pid, proc

    def _ensure_server(self) -> subprocess.Popen[bytes] | None:
        if not self.fork_server:
            return None
        if self._server is None or self._server.poll() is not None:
            self._server = procs.spawn(
                [sys.executable, "-m", procs.SUPERVISOR, "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        return self._server

    def close(self) -> None:
        """End the fork server (the supervisors it forked live on)."""
        server, self._server = self._server, None
        if server is None:
            return
        with contextlib.suppress(OSError):
            if server.stdin is not None:
                server.stdin.close()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def leftover_message(lane_id: str, attempt: int) -> str:
    return f"orchestree: work left uncommitted by lane {lane_id} (attempt {attempt})"


def sandbox_kind(config: Config, lane: Lane) -> str:
    """The lane's own `sandbox`, else `[sandbox] kind`."""
    return lane.sandbox or config.sandbox.kind


def sandbox_plan(repo: Repo, lane: Lane, writable: list[str]) -> dict[str, Any] | None:
    """What the supervisor needs to run this lane's agent in its sandbox; None: none."""
    kind = sandbox_kind(repo.config, lane)
    if kind == "none":
        return None
    common = git.common_dir(repo.root)
    network = repo.config.sandbox.network
    return sandbox.plan(kind, network, repo.root, common, repo.layout.orch, writable)


def share_plan(repo: Repo, base: str) -> dict[str, Any] | None:
    """Where `[worktree] share`'s template lives and what it holds; None without it."""
    folders = repo.config.worktree.share
    if not folders:
        return None
    return {"home": str(repo.layout.orch / "share"), "base": base, "folders": list(folders)}


def keep_out(repo: Repo, helper_tracked: bool, includes: list[str]) -> list[str]:
    """The paths a lane's leftover commit never takes (`worktree_guard.protected_paths`)."""
    return worktree_guard.protected_paths(repo.layout.rel(repo.layout.worktrees),
                                          not helper_tracked, includes)  # fmt: skip


def commit_leftovers(
    repo: Repo,
    lane_id: str,
    attempt: int,
    result: dict[str, Any],
    includes: list[str] | None = None,
) -> str | None:
    """The lane's head after the attempt. The supervisor commits what the agent left
    and records the head in its result; when it did not get to it, commit here, so no
    work is lost: after checking the worktree is still the lane's (else the result
    says what the agent changed, and nothing is committed)."""
    if "head" in result:
        head: str | None = result["head"]
        return head
    worktree = repo.layout.worktree(lane_id)
    if not os.path.lexists(worktree):
        return None
    head = git.head_commit(repo.root, f"refs/heads/{branch(lane_id)}")
    tracked = head is not None and _tracks_helper(repo.root, head)
    made = supervisor.setup_output(str(repo.layout.orch / "runs" / f"{lane_id}.setup.json"))
    left = worktree_guard.commit_left_work(
        repo.root, worktree, branch(lane_id), lane_id, attempt,
        leftover_message(lane_id, attempt), keep_out(repo, tracked, includes or []), made,
    )  # fmt: skip
    if left.problem:
        result.update(reason=worktree_guard.UNTRUSTED, error=left.problem)
    return left.head


def log_since(log: Path, offset: int) -> str:
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
