"""`[worktree] share`: folders `setup` makes, made once and given to every new worktree.

`npm ci` or a virtualenv per lane costs seconds to minutes. With `share`, `setup` runs
once, in a plain export of the base commit under `.orchestration/share/<key>/tree`
(built by the first lane that needs it, under a lock, while the others wait), and
each new worktree gets the listed folders as a copy-on-write clone (`cp -a
--reflink=always`, on btrfs, XFS and the like) or, where the filesystem cannot clone
(ext4), as a hard-link farm (`cp -al`): its own folders, never a symlink that one lane
could corrupt for all. `setup` does not run again in the worktree.

A hard-link farm shares the files' inodes: a file rewritten in place (not replaced)
changes for every lane. Package managers replace files, and the template's files are
made read-only, but an agent running as their owner can still `chmod` one: on such
a filesystem, a lane that must edit its dependencies in place should not use `share`.

Standard library and `orchestree.git` only: the supervisor imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestree import git, procs

READY = ".ready"
CLONE = ".clone"  # "reflink" or "hardlink": how this filesystem gives the folders


def key(base: str, setup: str, folders: list[str]) -> str:
    """One template per base commit, setup command and folder list."""
    text = "\0".join([base, setup, *folders])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def template(
    home: Path, root: Path, base: str, setup: str, folders: list[str],
    run_setup: Callable[[Path], int],
) -> tuple[Path | None, int, str]:  # fmt: skip
    """The prepared tree holding `folders` (built now if no lane built it yet), or
    None with setup's exit code, or with a problem to name (a folder setup did not
    make). `run_setup(cwd)` runs `[worktree] setup` in a folder and returns its code."""
    home.mkdir(parents=True, exist_ok=True)
    made = home / key(base, setup, folders)
    with _locked(made.with_name(made.name + ".lock")):
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
    the filesystem can make one, else a hard-link farm); which of the two it was.
    A folder the worktree already has (tracked, say) is left as it is."""
    try:
        how = (tree.parent / CLONE).read_text(encoding="ascii").strip()
    except OSError:  # a template made before the verdict was kept: links work anywhere
        how = "hardlink"
    for folder in folders:
        dest = worktree / folder
        if dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        flags = "--reflink=always" if how == "reflink" else "--link"
        procs.run(["cp", "-a", flags, str(tree / folder), str(dest)], check=True)
    return how


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
