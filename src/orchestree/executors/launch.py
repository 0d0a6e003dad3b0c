"""Starting one attempt of one lane, and reading how it ended: the one launcher.

`prepare` makes (or reuses) the lane's worktree at its start commit. `launch` builds
the lane's `AttemptSpec` (attempt.py: the agent's call from its preset, the worktree,
setup, sandbox and leftover commit), and `start` writes it and starts the per-lane
supervisor on it. A Dask worker's task (`dask_task.py`) launches through the same
`attempt_spec`, `start` and `outcome`, in a clone instead of a worktree.

`outcome` reads the supervisor's `AttemptResult`, ending an orphaned agent when the
supervisor died without one; `commit_leftovers` then commits what the agent left when
the supervisor could not, so no work is lost. What the outcome means for the lane is
`outcome.py`'s to say.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestree import agents, git, procs, sandbox, worktree_guard, worktree_pool, worktree_share
from orchestree.agents.prompt import rework_env, rework_section
from orchestree.config import Config
from orchestree.errors import UserError
from orchestree.executors import supervisor
from orchestree.executors.attempt import (
    AttemptFiles,
    AttemptResult,
    AttemptSpec,
    ContractError,
    NewWorktree,
    Share,
    read_result,
)
from orchestree.initrepo import install_helper
from orchestree.layout import Layout, branch
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


def prepare(repo: Repo, lane_id: str, lane: Lane, start: str, branch_absent: bool = False) -> bool:
    """Reuse the lane's worktree, or say it is new (True): the lane's supervisor then
    registers it (`worktree add`, under the administration lock shared by every
    process) and populates it, in parallel with the other lanes, off the orchestrator's
    path. A new path on a new branch needs no ownership check: git refuses to create a
    branch that exists or to use a folder that is not empty. `branch_absent`: the
    caller knows the branch does not exist, so git is not asked again.
    """
    path, name = repo.layout.worktree(lane_id), branch(lane_id)
    if not path.exists() and (branch_absent or not git.branch_exists(repo.root, name)):
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


def local_files(layout: Layout, lane_id: str, attempt: int) -> AttemptFiles:
    """An attempt's spec, result and agent files in the repository's runs folder."""
    return AttemptFiles(layout.orch / "runs", f"{lane_id}.{attempt}.")


@dataclass(frozen=True)
class Launched:
    """An attempt whose supervisor was started (or, after a restart, adopted): the
    handle an executor follows it by. `identity` is None when it is not known (gone at
    once, or recorded by an older orchestree); `process` is set when it is our child;
    `pidfd`, when the kernel gave one, turns readable the moment it exits (`outcome`
    closes it)."""

    attempt: int
    pid: int
    identity: procs.Identity | None
    files: AttemptFiles
    log_offset: int  # where the agent's own output starts in the lane's log
    process: subprocess.Popen[bytes] | None
    pidfd: int | None = None


def attempt_spec(
    config: Config, ctx: agents.LaunchContext, prompt: str, port: int, attempt: int,
    log: Path, extra_env: dict[str, str] | None = None,
) -> tuple[agents.AgentPreset, AttemptSpec]:  # fmt: skip
    """The lane's agent, and the spec of this attempt as far as it is the same for a
    worktree here and a clone on a Dask worker: the agent's call (the prompt is
    written to `ctx.prompt_file`, where the call may point), the lane's deadline, its
    leftover commit. The caller adds the rest (`dataclasses.replace`)."""
    agent = agents.preset_for(config, ctx.lane, where=f"lane {ctx.lane_id!r}")
    ctx.prompt_file.write_text(prompt, encoding="utf-8")
    call = agent.invocation(ctx, prompt)
    env = {
        **git.git_env({**call.env, **(extra_env or {})}),
        "ORCHESTREE_PORT": str(port),
        "ORCHESTREE_ATTEMPT": str(attempt),
    }
    spec = AttemptSpec(
        lane_id=ctx.lane_id,
        attempt=attempt,
        argv=call.argv,
        env=env,
        cwd=str(ctx.worktree),
        log=str(log),
        timeout_s=config.for_lane(ctx.lane).timeout_s,
        grace_s=config.defaults.kill_grace_s,
        branch=ctx.branch,
        commit_message=leftover_message(ctx.lane_id, attempt),
    )
    return agent, spec


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
    start_commit = lane.start_commit or ""
    install_helper(layout)  # restored if anything changed it since: it is pre-approved
    # A repository that tracks its own access_tracker.py keeps it; the prompt then
    # points at orchestree's copy.
    tracked = bool(start_commit) and _tracks_helper(repo.root, start_commit)
    helper = str(layout.helper) if tracked else "access_tracker.py"
    files = local_files(layout, lane_id, attempt)
    files.folder.mkdir(parents=True, exist_ok=True)
    settings = config.for_lane(lane)
    ctx = agents.LaunchContext(
        lane_id,
        lane,
        worktree,
        branch(lane_id),
        layout.tracker.resolve(),
        (files.folder / f"{lane_id}.prompt.md").resolve(),
        helper_in_worktree=helper == "access_tracker.py",
        sandboxed=settings.sandbox != "none",
    )
    prompt = (lane.prompt or agents.build_prompt(ctx)) + rework_section(repo.root, lane)
    log = layout.log(lane_id)
    agent, spec = attempt_spec(config, ctx, prompt, port, attempt, log,
                               rework_env(repo.root, lane))  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"--- orchestree: lane {lane_id} attempt {attempt}: {spec.argv[0]}\n".encode())
        offset = fh.tell()  # the agent's own output starts here
    spec = dataclasses.replace(
        spec,
        setup=config.worktree.setup if new else "",
        root=str(repo.root),
        register=NewWorktree(branch(lane_id), start_commit) if new else None,
        includes=includes if new else [],
        helper="" if tracked else str(layout.helper),
        # What setup left, kept for every attempt in this worktree: never committed.
        setup_snapshot=str(files.folder / f"{lane_id}.setup.json"),
        share=share_plan(repo, base or start_commit) if new and config.worktree.setup else None,
        # A spare worktree of `[worktree] pool` to claim instead of making one.
        pool=worktree_pool.plan(repo.root, layout.worktrees, base or start_commit, config.worktree)
        if new
        else None,
        sandbox=sandbox_plan(repo, settings.sandbox, agent.writable_folders),
        start_commit=start_commit,
        keep_out=keep_out(repo, tracked, includes),
    )
    return start(spec, files, offset, spawner or Spawner(fork_server=False))


def start(spec: AttemptSpec, files: AttemptFiles, log_offset: int, spawner: Spawner) -> Launched:
    """Write the spec to `files.spec` and start its supervisor. With `die_with_parent`
    it is our child with a pipe as its stdin, never written: it ends the agent when we
    die (a Dask worker); else `spawner` starts it in a session of its own."""
    for stale in (files.result, files.agent, files.supervisor):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    files.spec.write_text(spec.to_json(), encoding="utf-8")
    pid, proc = spawner.start(files.spec, watch_parent=spec.die_with_parent)
    ident = procs.identity(pid)
    if ident is not None:
        _record_supervisor(files, ident)
    pidfd = procs.open_pidfd(ident) if ident is not None and proc is None else None
    return Launched(spec.attempt, pid, ident, files, log_offset, proc, pidfd)


def _record_supervisor(files: AttemptFiles, ident: procs.Identity) -> None:
    """Leave the supervisor's identity beside the attempt's spec, for a later
    orchestrator when ours dies before the tracker names it (lanebook.py writes that
    record lazily). Whole or not at all (a rename); no fsync: an identity names a
    process of this boot only, and a power loss ends the boot. A supervisor that cannot
    be recorded (a full disk) is ended at once, its lane then cancelled: a resumed run
    would else take it for gone and start a second agent in its worktree."""
    temp = files.supervisor.with_name(f".{files.supervisor.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(ident.as_text(), encoding="utf-8")
        os.replace(temp, files.supervisor)
    except OSError:
        procs.signal_if_ours(ident, signal.SIGTERM)  # it ends its agent's tree
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def recorded_supervisor(files: AttemptFiles) -> procs.Identity | None:
    """The supervisor's identity as `start` left it beside the attempt's spec, while
    that process runs orchestree's supervisor; else None (gone, never started, its
    start cut short, or a file someone else wrote: never a process of theirs)."""
    try:
        ident = procs.Identity.from_text(files.supervisor.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return ident if ident is not None and procs.supervisor_identity(ident.pid) == ident else None


def supervisor_of(
    files: AttemptFiles, pid: int, ident: procs.Identity | None
) -> procs.Identity | None:
    """The identity of the attempt's supervisor from what the tracker recorded: `ident`
    when it has one; for a bare pid (the released version's record), that pid while it
    runs the supervisor; for none (started before the tracker said so), `files`'."""
    if ident is not None:
        return ident
    if pid > 0:
        return procs.supervisor_identity(pid)
    return recorded_supervisor(files)


def outcome(launched: Launched, grace_s: float, lost: str = "error") -> AttemptResult:
    """How the attempt ended, once its supervisor is over. When that supervisor died
    without saying (SIGKILL, OOM), its agent may live on: end its tree first, so a
    retry never shares the worktree with it, and report the attempt as `lost`."""
    if launched.pidfd is not None:
        os.close(launched.pidfd)
    result = read_result(launched.files.result)
    if result is not None:
        return result
    procs.end_orphaned_agent(launched.files.agent, grace_s)
    code = launched.process.returncode if launched.process is not None else None
    said = "" if code is None else f" (exit {code})"
    return AttemptResult(lost, error=f"the lane's supervisor ended without an outcome{said}")


class Spawner:
    """Starts lane supervisors, each in a session of its own (Ctrl-C in the terminal
    reaches the orchestrator, which decides). With `fork_server`, one warm Python is
    started once and forks a supervisor per lane (about 1 ms instead of tens for a new
    interpreter); if it cannot be used, each supervisor is started as a process."""

    def __init__(self, fork_server: bool = True) -> None:
        self.fork_server = fork_server
        self._server: subprocess.Popen[bytes] | None = None

    def start(
        self, spec_file: Path, watch_parent: bool = False
    ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Start a supervisor on `spec_file`: its pid, and its Popen when it is our
        child. `watch_parent`: always our child, with a pipe as its stdin."""
        if watch_parent:
            return self._spawn(spec_file, subprocess.PIPE)
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
        return self._spawn(spec_file, None)

    @staticmethod
    def _spawn(spec_file: Path, stdin: int | None) -> tuple[int, subprocess.Popen[bytes]]:
        proc: subprocess.Popen[bytes] = procs.spawn(
            [sys.executable, "-m", procs.SUPERVISOR, str(spec_file)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc.pid, proc

    def warm(self) -> None:
        """Start the fork server now, without waiting for it: its Python starts and
        imports (about 0.1 s of CPU) while the caller goes on, not when the first lane
        is launched."""
        self._ensure_server()

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


def leftover_message(lane_id: str, attempt: int) -> str:
    return f"orchestree: work left uncommitted by lane {lane_id} (attempt {attempt})"


def sandbox_plan(repo: Repo, kind: str, writable: list[str]) -> dict[str, Any] | None:
    """What the supervisor needs to run a lane's agent in its sandbox; None: none."""
    if kind == "none":
        return None
    common = git.common_dir(repo.root)
    network = repo.config.sandbox.network
    return sandbox.plan(kind, network, repo.root, common, repo.layout.orch, writable)


def share_plan(repo: Repo, base: str) -> Share | None:
    """Where `[worktree] share`'s template lives and what it holds; None without it."""
    worktree = repo.config.worktree
    folders = list(worktree.share)
    if not folders:
        return None
    made_key = worktree_share.key_at(repo.root, base, worktree.setup, folders, worktree.share_key)
    return Share(str(repo.layout.orch / "share"), base, folders, made_key)


def keep_out(repo: Repo, helper_tracked: bool, includes: list[str]) -> list[str]:
    """The paths a lane's leftover commit never takes (`worktree_guard.protected_paths`)."""
    return worktree_guard.protected_paths(repo.layout.rel(repo.layout.worktrees),
                                          not helper_tracked, includes)  # fmt: skip


def commit_leftovers(
    repo: Repo, lane_id: str, launched: Launched, result: AttemptResult
) -> str | None:
    """The lane's head after the attempt. The supervisor commits what the agent left
    and records the head in its result; when it did not get to it, the same code
    (`supervisor.commit_left_work`, on the same spec) commits here, so no work is lost.
    A commit that fails again leaves `result.commit_error` set."""
    if result.committed or result.reason == worktree_guard.UNTRUSTED:
        return result.head
    try:
        spec = AttemptSpec.from_json(launched.files.spec.read_text(encoding="utf-8"))
    except (OSError, ContractError):
        spec = None  # not this orchestree's: the work stays in the worktree for the next
    if spec is not None:
        if not os.path.lexists(spec.cwd):
            return None
        result.commit_error = None
        supervisor.commit_left_work(spec, result)
        if result.committed or result.reason == worktree_guard.UNTRUSTED:
            return result.head
    return git.head_commit(repo.root, f"refs/heads/{branch(lane_id)}")


def log_since(log: Path, offset: int) -> str:
    """The lane's log from `offset` (its last 256 KiB at most)."""
    try:
        with log.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - 4 * LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
