"""`[worktree] pool = N`: worktrees prepared ahead of time (DESIGN.md §15).

While `execute` runs, a `Filler` (threads beside the orchestrator's loop, never in
it) keeps up to N spare worktrees in `<worktree root>/.pool/`, each registered on no
branch at the run's base commit, with the `.worktreeinclude` files copied in and
`[worktree] setup` run in it (or `share`'s folders given). A starting lane's
supervisor then `claim`s one instead of making a worktree: git rewrites only the files
its start commit changes, and the lane's worktree has its setup already. What setup
left is recorded in the lane as any setup's output is (the supervisor's
`setup_snapshot`), so only what the agent changes is the lane's.

Each entry `p-<token>` of the pool folder is three things:
- `p-<token>/`, the worktree (its git admin folder keeps that name once claimed);
- `p-<token>.lock`, flocked by whoever builds, claims or sweeps the entry. A setup's
  processes hold it too (it is their stdin), so an entry whose builder died while
  its setup still runs is left alone until that setup ends;
- `p-<token>.ready`, written atomically once the entry is complete: its key (`key_at`:
  the setup and shared folders it was made for, and the base commit, or with `share`
  and `share_key` the files of it that decide the template) and its base commit.

A claim takes the lock without waiting (two lanes never get one entry), drops
`.ready`, checks out the start commit, then, under git's administration lock, puts the
lane branch there and moves the worktree to the lane's path. A SIGKILL anywhere leaves
an entry without `.ready` (the next `sweep` removes it; a lane branch made there stays
at its start commit, with nothing on it), a complete entry (reused) or a lane's
worktree. `sweep` runs when `execute` starts and before a retry; `cleanup` and `reset`
remove every spare.

Standard library, `orchestree.git` and what the supervisor imports anyway: the
supervisor claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from orchestree import git, procs, worktree_guard, worktree_share
from orchestree.errors import GitError

if TYPE_CHECKING:
    from orchestree.config import WorktreeConfig

FOLDER = ".pool"
PREFIX = "p-"
LOCK, READY = ".lock", ".ready"
POLL_S = 0.1  # how often the filler looks for entries lanes took
# A refill waits until lanes have stopped taking spares for this long: lanes start in
# bursts, and a setup run beside them slows their start (measured: bench/setup_share.py).
REFILL_AFTER_S = 1.0
NOT_REMOTE = (
    "[worktree] pool is ignored by [executor] dask: its workers make each lane's clone "
    "themselves (set pool = 0 to silence this)"
)


def folder_of(worktrees: Path) -> Path:
    """Where the pool of the worktree root `worktrees` lives."""
    return worktrees / FOLDER


def key(basis: str, setup: str, share: list[str]) -> str:
    """Which entries a run can use: made from its basis, by its setup and share."""
    return "pool-" + worktree_share.key(basis, setup, share)


def key_at(root: Path, base: str, config: WorktreeConfig) -> str:
    """The key of the entries a run on the base commit `base` can use. A claim checks
    out the lane's start commit whatever commit the spare was made at, so what the key
    must pin is what setup left: with `share` (and `share_key`), only the shared
    folders, given from the template, so the template's basis; setup run in the spare
    itself may have read any file, so then the base commit."""
    shared = bool(config.share and config.setup)
    watched = list(config.share_key) if shared else []
    return key(worktree_share.basis(root, base, watched), config.setup, config.share)


def plan(root: Path, worktrees: Path, base: str, config: WorktreeConfig) -> dict[str, str] | None:
    """What a lane's supervisor needs to claim a pooled worktree; None without a pool."""
    if config.pool <= 0:
        return None
    return {"folder": str(folder_of(worktrees)), "key": key_at(root, base, config)}


# --- one entry -------------------------------------------------------------------------


def _try_lock(path: Path, create: bool) -> int | None:
    """The entry's lock, taken without waiting; None when someone holds it (or, without
    `create`, when it is gone: its entry was claimed or swept meanwhile)."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _read_key(ready: Path) -> str | None:
    try:
        data = json.loads(ready.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("key")) if isinstance(data, dict) else None


def _write_ready(ready: Path, want: str, base: str) -> None:
    tmp = ready.with_name(ready.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"key": want, "base": base}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, ready)


def _discard(root: Path, folder: Path, name: str) -> None:
    """Remove the entry `name` (its lock held by the caller): its files outside git's
    lock, then its registration; a kill half-way leaves what the next sweep removes."""
    (folder / f"{name}{READY}").unlink(missing_ok=True)
    (folder / f"{name}{READY}.tmp").unlink(missing_ok=True)
    entry = folder / name
    shutil.rmtree(entry, ignore_errors=True)
    # git names an entry's admin folder after it (tokens are never reused).
    admin = git.common_dir(root) / "worktrees" / name
    gitdir = admin / "gitdir"
    with contextlib.suppress(OSError, GitError):
        if os.path.normpath(gitdir.read_text(encoding="utf-8").strip()) == os.path.normpath(
            entry.resolve() / ".git"
        ):
            git.worktree_forget(root, [admin])
    (folder / f"{name}{LOCK}").unlink(missing_ok=True)


def claim(
    pool: dict[str, str] | None, root: Path, path: Path, branch: str, start: str
) -> str | None:
    """Make `path` the lane's worktree on a new `branch` at `start` from a spare of
    the pool; the entry's name, or None when there is none to take (the caller then
    makes the worktree as usual)."""
    if not pool:
        return None
    folder, want = Path(pool["folder"]), pool["key"]
    try:
        readies = sorted(folder.glob(f"{PREFIX}*{READY}"))
    except OSError:
        return None
    for ready in readies:
        name = ready.name.removesuffix(READY)
        fd = _try_lock(folder / f"{name}{LOCK}", create=False)
        if fd is None:
            continue
        try:
            if not ready.exists() or _read_key(ready) != want:
                continue
            ready.unlink()  # from here on a kill leaves an entry the next sweep removes
            entry = folder / name
            try:
                _take(root, entry, path, branch, start)
            except (OSError, GitError):
                # e.g. a file setup changed that the start commit changes too: this
                # entry cannot serve, and neither would its siblings.
                _discard(root, folder, name)
                return None
            (folder / f"{name}{LOCK}").unlink(missing_ok=True)
            return name
        finally:
            os.close(fd)
    return None


def _take(root: Path, entry: Path, path: Path, branch: str, start: str) -> None:
    # Outside git's lock: only the files that differ from the base are rewritten, and
    # git refuses (keeping setup's changes) rather than overwrite one.
    git.run("checkout", "-q", "--detach", start, cwd=entry)
    with git.admin_lock(root):
        if os.path.lexists(path):  # `worktree move` would put the spare inside it
            raise GitError(("worktree", "move", str(entry), str(path)), 128, f"{path} exists")
        git.run("checkout", "-q", "--no-track", "-b", branch, cwd=entry)
        try:
            git.run("worktree", "move", str(entry), str(path), cwd=root)
        except GitError:  # the branch goes too (nothing is on it): the lane makes its own
            git.run("checkout", "-q", "--detach", cwd=entry, check=False)
            git.run("branch", "-D", branch, cwd=root, check=False)
            raise


# --- the sweep -------------------------------------------------------------------------


def _names(folder: Path) -> set[str]:
    try:
        items = os.listdir(folder)
    except OSError:
        return set()
    names = set()
    for item in items:
        if item.startswith(PREFIX):
            names.add(item.split(".", 1)[0])
    return names


def sweep(root: Path, worktrees: Path, keep: str | None = None) -> list[str]:
    """Remove every entry nobody holds, but the complete ones made for `keep` (a key;
    None removes those too, as `cleanup` does): half-built ones, ones an earlier run
    made for another base, ones a killed claim left. Their names."""
    folder = folder_of(worktrees)
    removed = []
    for name in sorted(_names(folder)):
        fd = _try_lock(folder / f"{name}{LOCK}", create=True)
        if fd is None:
            continue  # being built, claimed, or its setup still runs
        try:
            ready = folder / f"{name}{READY}"
            if keep is not None and (folder / name).is_dir() and _read_key(ready) == keep:
                continue
            _discard(root, folder, name)
            removed.append(name)
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        if not os.listdir(folder):
            folder.rmdir()
    return removed


def spares(worktrees: Path, want: str) -> list[str]:
    """The complete entries made for `want`, unclaimed."""
    folder = folder_of(worktrees)
    return sorted(n for n in _names(folder) if _read_key(folder / f"{n}{READY}") == want)


# --- the filler ------------------------------------------------------------------------

Report = Callable[[str], None]


class Filler:
    """Keeps up to `size` spare worktrees for the run whose base commit is `base`,
    each built on a thread of its own; `close` stops it and removes unfinished ones."""

    def __init__(
        self,
        root: Path,
        worktrees: Path,
        base: str,
        config: WorktreeConfig,
        share_home: Path,
        includes: list[str],
        log: Path,
        report: Report,
    ) -> None:
        self.root, self.worktrees, self.base = root, worktrees, base
        self.size, self.setup, self.share = config.pool, config.setup, list(config.share)
        self.share_home, self.includes, self.log, self.report = share_home, includes, log, report
        self.key = key_at(root, base, config)
        watched = config.share_key if self.share else []
        made_key = worktree_share.key_at(root, base, self.setup, self.share, watched)
        self.made = worktree_share.made_for(share_home, made_key)
        self.failed = False  # a setup failed: lanes run it themselves, and say why
        self._closed = threading.Event()
        self._guard = threading.Lock()
        self._building: dict[str, subprocess.Popen[bytes] | None] = {}
        self._builders: list[threading.Thread] = []
        self._loop: threading.Thread | None = None

    def start(self) -> None:
        """Sweep what earlier runs left (at once, before any lane starts), then fill."""
        self.sweep()
        folder_of(self.worktrees).mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._loop = threading.Thread(target=self._fill, name="worktree-pool", daemon=True)
        self._loop.start()

    def sweep(self) -> None:
        """Remove the entries nobody holds that this run cannot use (a claim a kill cut
        short leaves one on a lane branch, which a retry of that lane needs back)."""
        for name in sweep(self.root, self.worktrees, keep=self.key):
            self.report(f"… pool: removed {self.worktrees.name}/{FOLDER}/{name} (unusable)")

    def _fill(self) -> None:
        seen, quiet_until = self.size, 0.0
        while not self._closed.is_set() and not self.failed:
            ready = len(spares(self.worktrees, self.key))
            if ready < seen:  # lanes are starting: let them have the machine first
                quiet_until = time.monotonic() + REFILL_AFTER_S
            seen = ready
            with self._guard:
                missing = self.size - ready - len(self._building)
                if time.monotonic() < quiet_until:
                    missing = 0
                for _ in range(max(0, missing)):
                    name = PREFIX + secrets.token_hex(6)
                    self._building[name] = None
                    worker = threading.Thread(target=self._build, args=(name,), daemon=True)
                    self._builders.append(worker)
                    worker.start()
            self._closed.wait(POLL_S)

    def _build(self, name: str) -> None:
        folder = folder_of(self.worktrees)
        entry = folder / name
        fd = _try_lock(folder / f"{name}{LOCK}", create=True)
        if fd is None:  # cannot happen for a fresh token; never build without it
            self._done(name)
            return
        try:
            with os.fdopen(os.dup(fd), "rb") as held:
                problem = self._make(entry, held)
            if problem is None and not self._closed.is_set():
                _write_ready(folder / f"{name}{READY}", self.key, self.base)
            else:
                _discard(self.root, folder, name)
                if problem is not None and not self._closed.is_set():
                    self.failed = True
                    shown = f"{self.worktrees.name}/{FOLDER}/{name}"
                    self.report(f"! pool: {shown} discarded: {problem}; lanes run setup themselves")
        except (OSError, GitError, subprocess.SubprocessError) as exc:
            _discard(self.root, folder, name)
            if not self._closed.is_set():
                self.failed = True
                self.report(f"! pool: {name} discarded: {exc}")
        finally:
            os.close(fd)
            self._done(name)

    def _done(self, name: str) -> None:
        with self._guard:
            self._building.pop(name, None)

    def _make(self, entry: Path, held: IO[bytes]) -> str | None:
        """Register, populate and set up the entry; why it cannot serve, or None."""
        git.worktree_add_detached(self.root, entry, self.base)
        for rel in self.includes:
            worktree_guard.copy_regular(self.root / rel, entry, rel)
        if not self.setup or self._closed.is_set():
            return None
        with open(self.log, "ab") as log:
            log.write(f"orchestree: pool {entry.name}: worktree setup: {self.setup}\n".encode())
            if not self.share:
                code = self._run_setup(entry, entry.name, held, log)
                return None if code == 0 else self._failed(code)
            tree, code, problem = worktree_share.template(
                self.made, self.root, self.base, self.share,
                lambda cwd: self._run_setup(cwd, entry.name, held, log),
            )  # fmt: skip
            if tree is None:
                return problem or self._failed(code)
            how = worktree_share.give(tree, entry, self.share)
            log.write(f"orchestree: pool {entry.name}: worktree share: "
                      f"{', '.join(self.share)} ({how})\n".encode())  # fmt: skip
        return None

    def _failed(self, code: int) -> str:
        return f"worktree setup failed (exit {code}); see {os.path.relpath(self.log, self.root)}"

    def _run_setup(self, cwd: Path, name: str, held: IO[bytes], log: IO[bytes]) -> int:
        """`[worktree] setup` in `cwd` for the entry `name`. Its processes inherit the
        entry's lock as their stdin: if we die, a setup that still runs keeps it."""
        env = git.git_env({"ORCHESTREE_WORKTREE": str(cwd)})
        # At a lower priority: the lanes running now come before the ones to come.
        argv = ["nice", "-n", "10", "sh", "-c", self.setup]
        proc = procs.spawn(argv, cwd=cwd, env=env, stdin=held, stdout=log,
                           stderr=subprocess.STDOUT)  # fmt: skip
        with self._guard:
            self._building[name] = proc
        code = proc.wait()
        # What it left running in its group would hold the entry's lock for ever.
        procs.end_tree(procs.Tree(pgid=proc.pid), 1.0)
        return code

    def close(self, grace_s: float = 2.0) -> None:
        """Stop filling; end the setups still running and remove their entries. The
        complete spares stay for the next run with this key (`cleanup` removes them)."""
        self._closed.set()
        with self._guard:
            running = [p for p in self._building.values() if p is not None]
        for proc in running:
            procs.end_tree(procs.Tree(pgid=proc.pid), grace_s)
        if self._loop is not None:
            self._loop.join()
        for worker in list(self._builders):
            worker.join()
