"""`[worktree] share`: folders `setup` makes, made once and given to every new worktree.

`npm ci` or a virtualenv per lane costs seconds to minutes. With `share`, `setup` runs
once, in a plain export of the base commit under `.orchestration/share/<key>/tree`
(built by the first lane that needs it, under a lock, while the others wait), and
each new worktree gets the listed folders as a copy-on-write clone (`cp -a
--reflink=always`, on btrfs, XFS and the like) or, where the filesystem cannot clone
(ext4), as a hard-link farm (`cp -al`): its own folders, never a symlink that one lane
could corrupt for all. `setup` does not run again in the worktree.

The key is a hash of `setup`, the folder list and what the template is made from (its
`basis`): the base commit, since setup may read any file of it, or, with `[worktree]
share_key`, only the files of it those patterns name (the lockfiles): then a run on a
base commit that a merge moved, but whose lockfiles did not change, finds the template
and its copies made ahead where an earlier run left them. `sweep` (run by `cleanup`)
removes the templates no run would use any more.

A hard-link farm of a large folder still costs a link per file (about 40 ms for 5 000
files here, all of it in the kernel), and twelve lanes starting at once pay it twelve
times on the same cores that start them. So while `execute` runs, a `Stock` (a thread
beside the orchestrator's loop) keeps copies made ahead, `max_parallel` of each folder
(at most `STOCK_MAX`), under `<key>/copies/<n>/` (n: the folder's place in the list),
made at a low priority and only once lanes have stopped taking them for a second. A
lane takes one with a single `rename` into its worktree (two lanes never get the same
copy; where none is left, or the rename cannot cross filesystems, the lane links its
own as before). A copy is made under a `.making-` name and renamed complete, so a
kill leaves either a complete copy or one the next `Stock` removes; only the
orchestrator makes copies, and one orchestrator runs at a time.

A hard-link farm shares the files' inodes: a file rewritten in place (not replaced)
changes for every lane. Package managers replace files, and the template's files are
made read-only, but an agent running as their owner can still `chmod` one: on such
a filesystem, a lane that must edit its dependencies in place should not use `share`.

Standard library and `orchestree.git` only: the supervisor imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import secrets
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from orchestree import git, procs

READY = ".ready"
CLONE = ".clone"  # "reflink" or "hardlink": how this filesystem gives the folders
COPIES = "copies"  # copies made ahead: <key>/copies/<n>/c-<token>, n the folder's place
TAKEN, MAKING = "c-", ".making-"  # a complete copy; one being made (or cut short)
POLL_S = 0.1  # how often the stock looks for copies lanes took
# Copies are made once lanes have stopped taking them for this long: a copy made beside
# a burst of lane starts slows them (the same rule as the pool's refill).
REFILL_AFTER_S = 1.0
# A copy's folders are its own (a large node_modules has thousands, each a disk block):
# the stock never holds more copies of a folder than this, whatever max_parallel says.
STOCK_MAX = 16


def key(basis: str, setup: str, folders: list[str]) -> str:
    """One template per basis (the base commit, or its files that decide the
    template: `basis`), setup command and folder list."""
    text = "\0".join([basis, setup, *folders])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def basis(root: Path, base: str, watched: list[str]) -> str:
    """What the template made on the base commit `base` is made from: `base` itself
    or, with `watched` (`[worktree] share_key`), the files of `base` those patterns
    match, each by its mode, object id and path, so that a base commit whose matching
    files are the same gives the same basis. The base commit again when they match
    no file: setup may read anything then (and a mistyped name must not freeze the
    template). One git call per base commit and patterns; cached, commits never change."""
    return _basis(str(root), base, tuple(watched)) if watched else base


@functools.lru_cache(maxsize=32)
def _basis(root: str, base: str, watched: tuple[str, ...]) -> str:
    files = git.files_matching(Path(root), base, list(watched))
    return "\n".join(["files", *files]) if files else base


def key_at(root: Path, base: str, setup: str, folders: list[str], watched: list[str]) -> str:
    """The key of the template a run on the base commit `base` uses."""
    return key(basis(root, base, watched), setup, folders)


def made_for(home: Path, made_key: str) -> Path:
    """Where the template (and its copies made ahead) of `made_key` lives under `home`."""
    return home / made_key


def _lock_of(made: Path) -> Path:
    return made.with_name(made.name + ".lock")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def template(
    made: Path, root: Path, base: str, folders: list[str], run_setup: Callable[[Path], int],
) -> tuple[Path | None, int, str]:  # fmt: skip
    """The prepared tree holding `folders` in `made` (`made_for`; built now from the
    base commit `base` if no lane built it yet), or None with setup's exit code, or
    with a problem to name (a folder setup did not make). `run_setup(cwd)` runs
    `[worktree] setup` in a folder and returns its code."""
    made.parent.mkdir(parents=True, exist_ok=True)
    with _locked(_lock_of(made)):
        if (made / READY).exists():
            return made / "tree", 0, ""
        shutil.rmtree(made, ignore_errors=True)  # a build killed half-way
        tree = made / "tree"
        git.export_tree(root, base, tree)
        code = run_setup(tree)
        if code != 0:
            shutil.rmtree(made, ignore_errors=True)
            return None, code, ""
        missing = [f for f in folders if not (tree / f).is_dir() or (tree / f).is_symlink()]
        if missing:
            shutil.rmtree(made, ignore_errors=True)
            return None, 1, f"setup did not make {', '.join(missing)} (listed in [worktree] share)"
        for folder in folders:
            _read_only(tree / folder)
        (made / CLONE).write_text(_clone_kind(made), encoding="ascii")
        (made / READY).touch()
        return tree, 0, ""


def sweep(home: Path, keep: set[str]) -> list[tuple[str, int]]:
    """Remove the templates under `home` whose key is not in `keep`, each with its
    copies made ahead; each one's key and how many complete copies it had. The caller
    holds the run lock and no lane runs (a lane takes copies without a lock); a
    template being built (its lock held) is left alone. `.ready` goes first: from then
    on a kill leaves a template no lane uses, which the next sweep (or a rebuild) ends."""
    try:
        names = os.listdir(home)
    except OSError:
        return []
    removed = []
    for name in sorted({n.removesuffix(".lock") for n in names} - keep):
        if not _is_key(name):
            continue  # not one of ours: never touched
        made = home / name
        try:
            fd = os.open(_lock_of(made), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            copies = sum(len(_complete(_stock_of(made, int(n)))) for n in _stocks(made))
            (made / READY).unlink(missing_ok=True)
            if made.exists():
                shutil.rmtree(made)
            # Nobody can wait on this lock: no run uses this key (the caller's promise).
            _lock_of(made).unlink(missing_ok=True)
        except OSError:
            continue  # being built, or a file that cannot go: left for the next sweep
        finally:
            os.close(fd)
        removed.append((name, copies))
    return removed


def _is_key(name: str) -> bool:
    return len(name) == 16 and all(c in "0123456789abcdef" for c in name)


def _stocks(made: Path) -> list[str]:
    try:
        return [n for n in os.listdir(made / COPIES) if n.isdigit()]
    except OSError:
        return []


def _read_only(folder: Path) -> None:
    """Files of a template lose their write bits: an in-place write through a hard
    link fails for anyone the permissions bind (an agent in the sandbox has no
    capability to override them)."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, stat.S_IMODE(mode) & ~0o222)


def give(tree: Path, worktree: Path, folders: list[str]) -> str:
    """Each of `folders` from the template `tree` into `worktree` (a reflink clone where
    the filesystem can make one, else a hard-link farm; one made ahead when the stock
    has one); which of the two it was. A folder the worktree already has (tracked, say)
    is left as it is."""
    how = _how(tree.parent)
    ahead = 0
    for index, folder in enumerate(folders):
        dest = worktree / folder
        if dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if _take(tree.parent, index, dest):
            ahead += 1
        else:
            _copy(tree / folder, dest, how)
    return f"{how}, made ahead" if ahead else how


def _how(made: Path) -> str:
    try:
        return (made / CLONE).read_text(encoding="ascii").strip()
    except OSError:  # a template made before the verdict was kept: links work anywhere
        return "hardlink"


def _copy(source: Path, dest: Path, how: str, nice: bool = False) -> None:
    flags = "--reflink=always" if how == "reflink" else "--link"
    lower = ["nice", "-n", "10"] if nice else []  # the lanes starting now come first
    procs.run([*lower, "cp", "-a", flags, str(source), str(dest)], check=True)


def _stock_of(made: Path, index: int) -> Path:
    return made / COPIES / str(index)


def _complete(folder: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.startswith(TAKEN))
    except OSError:
        return []


def _take(made: Path, index: int, dest: Path) -> bool:
    """Move a copy of folder `index` made ahead to `dest`, which does not exist: one
    rename, so two lanes never get the same copy. False when none could be taken."""
    stock = _stock_of(made, index)
    for name in _complete(stock):
        try:
            os.rename(stock / name, dest)
        except FileNotFoundError:
            continue  # another lane took it first
        except OSError:
            return False  # e.g. the worktrees live on another filesystem: link one
        return True
    return False


class Stock:
    """Keeps `want` copies of each shared folder of the template `made` made ahead,
    while `execute` runs (module docstring); `close` stops it. Nothing is made until
    the template is complete (a lane builds it)."""

    def __init__(self, made: Path, folders: list[str], want: int) -> None:
        self.made, self.folders, self.want = made, folders, want
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.sweep()
        self._thread = threading.Thread(target=self._fill, name="share-stock", daemon=True)
        self._thread.start()

    def sweep(self) -> None:
        """Remove the copies a kill cut short (only this run's orchestrator makes any)."""
        for index in range(len(self.folders)):
            stock = _stock_of(self.made, index)
            with contextlib.suppress(OSError):
                for name in os.listdir(stock):
                    if name.startswith(MAKING):
                        shutil.rmtree(stock / name, ignore_errors=True)

    def counts(self) -> list[int]:
        """How many complete copies of each folder are there now."""
        return [len(_complete(_stock_of(self.made, i))) for i in range(len(self.folders))]

    def _fill(self) -> None:
        seen, quiet_until = -1, 0.0
        while not self._closed.is_set():
            if not (self.made / READY).exists():
                self._closed.wait(POLL_S)
                continue
            counts = self.counts()
            if min(counts) < seen:  # lanes are starting: let them have the machine first
                quiet_until = time.monotonic() + REFILL_AFTER_S
            seen = min(counts)
            short = [i for i, n in enumerate(counts) if n < self.want]
            if not short or time.monotonic() < quiet_until:
                self._closed.wait(POLL_S)
                continue
            try:
                self._make(short[0])
            except (OSError, subprocess.CalledProcessError):
                self._closed.wait(POLL_S)  # the template went (rebuilt), say: look again
            seen = min(self.counts())

    def _make(self, index: int) -> None:
        stock = _stock_of(self.made, index)
        stock.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(6)
        part = stock / f"{MAKING}{token}"
        try:
            _copy(self.made / "tree" / self.folders[index], part, _how(self.made), nice=True)
            os.rename(part, stock / f"{TAKEN}{token}")
        finally:
            shutil.rmtree(part, ignore_errors=True)

    def close(self) -> None:
        """Stop making copies (the one being made is finished first); the complete
        ones stay for the next run on this template."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        self.sweep()


class _Worker(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


W = TypeVar("W", bound=_Worker)


@contextlib.contextmanager
def background(worker: W | None) -> Iterator[W | None]:
    """Run `worker` (a `Stock`, the pool's `Filler`; when there is one) for the time of
    the block: started before it, closed after it, whatever ends it."""
    if worker is None:
        yield None
        return
    worker.start()
    try:
        yield worker
    finally:
        worker.close()


def _clone_kind(made: Path) -> str:
    """Can this filesystem clone files (tried once, when the template is made; the
    worktrees live on the same filesystem as `.orchestration/` in all but odd setups,
    where `cp --reflink=always` then fails and names itself in the lane's log)?"""
    source, probe = made / ".clone-source", made / ".clone-probe"
    source.write_text("a file to try a clone with\n", encoding="ascii")
    try:
        cmd = ["cp", "--reflink=always", str(source), str(probe)]
        done = procs.run(cmd)
        return "reflink" if done.returncode == 0 else "hardlink"
    finally:
        source.unlink(missing_ok=True)
        probe.unlink(missing_ok=True)
