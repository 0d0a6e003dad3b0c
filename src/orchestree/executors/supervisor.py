"""A per-lane supervisor: runs one agent and makes sure nothing of it outlives the lane.

    python -m orchestree.executors.supervisor <stem>spec.json

It reads its `AttemptSpec` (executors/attempt.py) and refuses one of another version
or shape with one line, which becomes the lane's error; it answers with an
`AttemptResult` in `<stem>result.json`, always, whatever happened.

It makes itself a child subreaper (so a descendant that calls `setsid` and leaves
the agent's process group is re-parented to us, not to PID 1), starts the agent in a
process group of its own with stdin from /dev/null and output to the lane's log,
and ends the whole tree — group and re-parented descendants, zombies ignored — when
the agent exits, at the deadline, on SIGTERM, or (with `die_with_parent`) when its
parent goes away. It then writes the outcome atomically and exits.

`die_with_parent` is for a parent that may die without warning (a Dask worker that is
SIGKILLed): the parent gives us a pipe as stdin and never writes to it; its end of the
pipe closes when it dies however it dies, and EOF here ends the agent's tree within a
poll period. A changed `getppid()` is checked as well.
Measured facts behind this: ../shared/research/dask-executor.md, last sections.

It also does the lane's own git work, so lanes do it side by side rather than one at
a time in the orchestrator: before the agent it populates a new worktree (the
orchestrator only registered it), copies the `.worktreeinclude` files and the tracker
helper in, and runs `[worktree] setup`; after the agent it commits whatever was left
uncommitted (`commit_left_work`, the one place that does) and records the head and
the changed files in the result. On a Dask worker the worktree is a clone of its own.

Standard library and orchestree's git-level modules only (no pydantic): it starts in
~50 ms and costs a few MB per lane.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import secrets
import select
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestree import git, procs, sandbox, worktree_guard, worktree_pool, worktree_share
from orchestree.errors import GitError
from orchestree.executors.attempt import (
    AttemptFiles,
    AttemptResult,
    AttemptSpec,
    ContractError,
    changed_files,
)

SCAN_S = procs.SCAN_S


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reap(agent: subprocess.Popen[bytes] | None = None) -> None:
    """Reap exited children; the agent through its Popen, so its exit status is kept."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        if agent is not None and info.si_pid == agent.pid:
            agent.poll()
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.si_pid, 0)


def end_tree(
    pgid: int | None, grace_s: float, agent: subprocess.Popen[bytes] | None = None
) -> None:
    """End the group `pgid` and every descendant of ours (`procs.end_tree`): as a
    subreaper, a `setsid` daemon of the agent is still our descendant. `agent` (the
    group leader) is reaped through its Popen so its exit status is kept."""
    tree = procs.Tree(pgid=pgid, root=os.getpid())
    procs.end_tree(tree, grace_s, reap=lambda: _reap(agent))


def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


def _parent_gone(parent: int, pipe: bool) -> bool:
    """Wait one poll period for EOF on stdin when it is the parent's pipe (EOF on
    /dev/null means nothing); True when it came or `getppid()` changed."""
    if os.getppid() != parent:
        return True
    if not pipe:
        time.sleep(SCAN_S * 2)
        return False
    try:
        readable, _, _ = select.select([0], [], [], SCAN_S * 2)
        return bool(readable) and os.read(0, 4096) == b""
    except OSError:
        time.sleep(SCAN_S * 2)
        return False


def _write_atomic(path: str | Path, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _run_setup(spec: AttemptSpec, log: Any, deadline: float, cwd: str = "") -> int:
    """Run `[worktree] setup` once in a new worktree, under the lane's deadline."""
    proc = procs.spawn(
        ["sh", "-c", spec.setup],
        cwd=cwd or spec.cwd,
        env=spec.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        return proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        end_tree(proc.pid, spec.grace_s, proc)
        proc.wait()
        return -1


def _setup(spec: AttemptSpec, log: Any, deadline: float) -> int:
    """`[worktree] setup` in the new worktree; with `[worktree] share`, once in a
    template tree whose shared folders the worktree then gets (worktree_share.py)."""
    share = spec.share
    if share is None:
        log.write(f"orchestree: worktree setup: {spec.setup}\n".encode())
        return _run_setup(spec, log, deadline)
    folders = list(share.folders)

    def once(cwd: Path) -> int:
        log.write(f"orchestree: worktree setup, once for [worktree] share: {spec.setup}\n".encode())
        return _run_setup(spec, log, deadline, str(cwd))

    try:
        made = worktree_share.made_for(Path(share.home), share.key)
        tree, code, problem = worktree_share.template(
            made, Path(spec.root), share.base, folders, once
        )
        if tree is None:
            log.write(f"orchestree: {problem}\n".encode() if problem else b"")
            return code
        how = worktree_share.give(tree, Path(spec.cwd), folders)
    except (OSError, GitError, subprocess.CalledProcessError) as exc:
        log.write(f"orchestree: [worktree] share: {exc}\n".encode())
        return 1
    log.write(f"orchestree: worktree share: {', '.join(folders)} ({how})\n".encode())
    return 0


def _prepare_worktree(spec: AttemptSpec) -> AttemptSpec:
    """Register and populate a new worktree (or claim a `[worktree] pool` spare), then
    copy in includes and the helper. The spec to go on with: a spare's setup is done."""
    cwd, root = Path(spec.cwd), Path(spec.root)
    new = spec.register
    pooled = None
    if new is not None:
        pooled = worktree_pool.claim(spec.pool, root, cwd, new.branch, new.start)
        if pooled is None:
            git.worktree_add(root, cwd, new.branch, new.start)
        if spec.setup_snapshot:  # an earlier worktree's setup is not this one's
            Path(spec.setup_snapshot).unlink(missing_ok=True)
    if cwd.is_symlink():  # never prepare a folder the path does not own
        raise OSError(f"{cwd} is a symlink, not the lane's worktree")
    for rel in spec.includes:
        # Regular files only, never through or onto a symlink a lane committed.
        worktree_guard.copy_regular(root / rel, cwd, rel)
    if spec.helper:  # a tracked one (or anything the agent put there) is kept
        worktree_guard.copy_regular(Path(spec.helper), cwd, "access_tracker.py")
    return spec if pooled is None else _pooled(spec, pooled)


def _pooled(spec: AttemptSpec, name: str) -> AttemptSpec:
    """The worktree came from `[worktree] pool` with its setup done: record what that
    setup left, as `supervise` does after a setup, and run none."""
    with open(spec.log, "ab") as log:
        log.write(f"orchestree: worktree from the pool ({name}), set up ahead of time\n".encode())
    _snapshot_setup(spec)
    return dataclasses.replace(spec, setup="")


def _snapshot_setup(spec: AttemptSpec) -> None:
    """Record what `[worktree] setup` left uncommitted (file -> blob id, "" when it
    deleted the file), so the lane's commit leaves it out: only the agent's changes
    are the lane's. A setup file the agent then changes is the agent's, and committed."""
    if not spec.setup_snapshot:
        return
    cwd = Path(spec.cwd)
    dirty = git.dirty_files(cwd)
    blobs = git.hash_files(cwd, dirty)
    _write_atomic(spec.setup_snapshot, json.dumps({f: blobs.get(f, "") for f in dirty}))


def setup_output(where: str | None) -> dict[str, str]:
    """What `_snapshot_setup` recorded at `where` for a lane's worktree (any attempt)."""
    try:
        with open(where or "", encoding="utf-8") as fh:
            made = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in made.items()} if isinstance(made, dict) else {}


def commit_left_work(spec: AttemptSpec, result: AttemptResult) -> None:
    """Verify the worktree is still the lane's, then commit what the agent left
    uncommitted; record the head and the changed files, or what the agent changed.
    The one place an attempt's leftovers are committed: here after the agent, or by
    the orchestrator (`launch.commit_leftovers`) when this supervisor died first."""
    cwd, root = Path(spec.cwd), Path(spec.root)
    if not spec.commit_message:
        return
    began = time.monotonic()
    try:
        left = worktree_guard.commit_left_work(
            root, cwd, spec.branch, spec.lane_id, spec.attempt, spec.commit_message,
            spec.keep_out, setup_output(spec.setup_snapshot), clone=spec.clone,
        )  # fmt: skip
        if left.problem:
            result.reason, result.error, result.head = worktree_guard.UNTRUSTED, left.problem, None
            return
        result.committed, result.head = True, left.head
        # Here, in parallel, rather than in the orchestrator's loop.
        result.changed = changed_files(root, spec.start_commit, left.head)
    except GitError as exc:
        result.commit_error = str(exc)
    finally:
        result.timings["commit"] = round(time.monotonic() - began, 4)


def run_lane(spec: AttemptSpec, agent_file: Path | None = None) -> AttemptResult:
    """Prepare the worktree, supervise the agent, commit what it left."""
    stop = _catch_stop()
    try:
        spec = _prepare_worktree(spec)
    except (OSError, GitError) as exc:
        with open(spec.log, "ab") as log:
            log.write(f"orchestree: cannot prepare the worktree: {exc}\n".encode())
        return AttemptResult("error", error=f"worktree preparation: {exc}")
    box, root = spec.sandbox, Path(spec.root)
    try:  # inside the sandbox the refs folder is writable: see sandbox.py
        refs = sandbox.snapshot_refs(box, root)
        saved = _save_refs(spec, refs, agent_file)
    except (GitError, OSError) as exc:
        return AttemptResult("error", error=f"sandbox: {exc}")
    result = supervise(spec, stop, agent_file)
    with contextlib.suppress(GitError):
        result.refs_restored = sandbox.restore_refs(box, root, refs)
        if saved is not None:
            saved.unlink(missing_ok=True)
    commit_left_work(spec, result)
    return result


def _save_refs(spec: AttemptSpec, refs: dict[str, str], beside: Path | None) -> Path | None:
    """Keep the guarded refs where the orchestrator restores them from if we are killed
    while the agent runs (sandbox.restore_saved), beside the attempt's other files;
    where, or None when none are guarded."""
    if not refs or beside is None:
        return None
    saved = sandbox.saved_refs_file(beside.parent, spec.lane_id, spec.attempt)
    sandbox.save_refs(saved, refs)
    return saved


def _catch_stop() -> dict[str, str]:
    """From now on SIGTERM/SIGINT only record a stop request, which the loop acts on."""
    stop = {"reason": ""}

    def on_term(signum: int, _frame: object) -> None:
        stop["reason"] = "cancelled" if signum == signal.SIGTERM else "interrupted"

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return stop


def supervise(
    spec: AttemptSpec, stop: dict[str, str] | None = None, agent_file: Path | None = None
) -> AttemptResult:
    """Run the agent (after `[worktree] setup` in a new worktree) until it exits, its
    deadline passes or it is stopped; end its whole tree; say how it ended. The
    agent's identity goes to `agent_file`, for ending its tree should we die."""
    procs.become_subreaper()
    stop = stop if stop is not None else _catch_stop()
    parent = os.getppid()
    started = _now()
    grace = spec.grace_s
    deadline = time.monotonic() + spec.timeout_s
    watch_parent = spec.die_with_parent
    # Every process of the agent's tree inherits this token, a `setsid` daemon too: it
    # lets whoever outlives us (the orchestrator, a Dask task) find the tree if we die.
    token = secrets.token_hex(8)
    with open(spec.log, "ab", buffering=0) as log:
        if spec.setup:
            code = _setup(spec, log, deadline)
            if code != 0:
                log.write(f"orchestree: worktree setup failed (exit {code})\n".encode())
                return AttemptResult("setup-failed", exit_code=code, started_at=started)
            _snapshot_setup(spec)
        try:
            argv = sandbox.wrap(spec.sandbox, spec.argv, spec.cwd)
        except (OSError, GitError) as exc:
            log.write(f"orchestree: cannot set up the sandbox: {exc}\n".encode())
            return AttemptResult("error", error=f"sandbox: {exc}")
        try:
            agent = procs.spawn(
                argv,
                cwd=spec.cwd,
                env={**spec.env, procs.TREE_ENV: token},
                stdout=log,
                stderr=subprocess.STDOUT,
                # On a worker that may die without warning, the kernel TERMs the agent
                # the moment we die; the task then ends the rest of the tree by token.
                die_with_parent=watch_parent,
            )
        except OSError as exc:
            log.write(f"orchestree: cannot start {spec.argv[0]}: {exc}\n".encode())
            return AttemptResult("error", error=str(exc), started_at=started)
        agent_id = procs.identity(agent.pid)
        if agent_file is not None and agent_id is not None:
            _write_atomic(agent_file, json.dumps(procs.agent_record(agent_id, token)))
        reason = "exited"
        pipe = watch_parent and _stdin_is_pipe()
        while agent.poll() is None:
            if stop["reason"]:
                reason = stop["reason"]
            elif time.monotonic() >= deadline:
                reason = "timeout"
            elif watch_parent and _parent_gone(parent, pipe):
                reason = "parent-died"
            if reason != "exited":
                log.write(f"\norchestree: ending the agent ({reason})\n".encode())
                break
            if not watch_parent:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.wait(SCAN_S * 2)
        # Whatever the agent left running (a daemon that called setsid, a background
        # job) ends with it: a finished lane leaves no process behind. Nobody waits
        # for an orphaned lane's agent, so it gets a short grace.
        quick = reason in ("exited", "parent-died")
        end_tree(agent.pid, min(grace, 1.0) if quick else grace, agent)
        code = agent.wait()
    return AttemptResult(
        reason, exit_code=code, agent_pid=agent.pid, started_at=started, finished_at=_now()
    )


def serve() -> int:
    """A fork server: read spec paths on stdin, one JSON string a line; fork a supervisor for each
    (in a session of its own) and answer its pid on stdout. Forking this warm process
    costs about a millisecond where starting a Python costs tens; it ends at EOF, and
    the supervisors it forked live on (they are adopted as any others)."""
    import select

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.2)
        _reap_forked()
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return 0
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            spec_path = _spec_path(line)
            if spec_path is None:  # not the protocol: answer so, never fork for it
                os.write(1, b"refused\n")
                continue
            pid = procs.fork(functools.partial(_forked, spec_path))
            os.write(1, f"{pid}\n".encode())


def _spec_path(line: bytes) -> str | None:
    """A request is one JSON string (the spec's path) a line; anything else is refused."""
    try:
        path = json.loads(line)
    except ValueError:
        return None
    return path if isinstance(path, str) and path and "\n" not in path else None


def _forked(spec_path: str) -> int:
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return main(["supervisor", spec_path])


def _reap_forked() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] == "--serve":
        return serve()
    files = AttemptFiles.of_spec(Path(argv[1])) if len(argv) == 2 else None
    if files is None:
        usage = "usage: python -m orchestree.executors.supervisor <stem>spec.json | --serve"
        print(usage, file=sys.stderr)
        return 2
    try:
        spec = AttemptSpec.from_json(files.spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ContractError) as exc:
        # Refused before anything runs: one line, which the lane fails with.
        problem = f"{files.spec}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        print(f"orchestree supervisor: {problem}", file=sys.stderr)
        _write_atomic(files.result, AttemptResult("error", error=problem).to_json())
        return 2
    try:
        result = run_lane(spec, files.agent)
    except Exception as exc:  # the orchestrator must always get an outcome
        result = AttemptResult("error", error=repr(exc))
    _write_atomic(files.result, result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
