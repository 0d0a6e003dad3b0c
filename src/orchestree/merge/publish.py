"""Moving the base branch once, so that a kill at any moment loses nothing (DESIGN.md §8).

The base branch moves by one fast-forward in the worktree that has it checked out (so
the user's files follow) or, when no worktree has it, by a compare-and-swap of the ref.
A fast-forward is git's checkout of the files followed by the ref update; a process
killed between the two leaves the files at the new commit and the ref at the old one.
So a journal (`.orchestration/merge-journal.json`: branch, worktree, old, new) is
written before it and removed once the tracker records the merge, and the next `merge`
starts with `recover`, which finishes the move (or drops the journal when nothing moved).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestree import git
from orchestree.errors import EnvironmentRefused
from orchestree.layout import Layout


@dataclass(frozen=True)
class Journal:
    branch: str
    worktree: str
    old: str
    new: str


def journal_path(layout: Layout) -> Path:
    return layout.merge_journal


def read_journal(layout: Layout) -> Journal | None:
    try:
        data = json.loads(journal_path(layout).read_text(encoding="utf-8"))
        return Journal(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # Written by replace-after-fsync, so a torn journal means it was never complete:
        # the fast-forward had not started.
        clear_journal(layout)
        return None


def write_journal(layout: Layout, journal: Journal) -> None:
    path = journal_path(layout)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, json.dumps(asdict(journal)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def clear_journal(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        journal_path(layout).unlink()


def checked_out_in(root: Path, branch: str) -> Path | None:
    """The worktree that has `branch` checked out, if any."""
    for tree in git.worktree_list(root):
        if tree.branch == branch and not tree.prunable:
            return tree.path
    return None


def publish(layout: Layout, root: Path, branch: str, old: str, new: str) -> bool:
    """Move `branch` from `old` to `new` in one step; False (nothing done) if it moved.

    On True the journal stays until the caller has recorded the merge in the tracker
    and called `clear_journal`.
    """
    ref = f"refs/heads/{branch}"
    holder = checked_out_in(root, branch)
    if holder is None:
        return git.update_ref(root, ref, new, old)
    if git.head_commit(root, ref) != old:
        return False
    dirty = git.dirty_files(holder, untracked=False)
    if dirty:
        raise EnvironmentRefused(
            f"{holder} (where {branch} is checked out) has uncommitted changes to "
            f"{', '.join(dirty[:10])}; commit or stash them, then merge again"
        )
    write_journal(layout, Journal(branch, str(holder), old, new))
    proc = git.merge_ff_only(holder, new)
    if proc.returncode == 0:
        return True
    now = git.head_commit(root, ref)
    if git.dirty_files(holder, untracked=False):
        raise EnvironmentRefused(
            f"the fast-forward of {branch} in {holder} failed halfway "
            f"({(proc.stderr or proc.stdout).strip()}); run `orchestree merge` again to finish it"
        )
    clear_journal(layout)
    if now != old:
        return False
    reason = (proc.stderr or proc.stdout).strip().splitlines()
    raise EnvironmentRefused(
        f"could not fast-forward {branch} in {holder}: {reason[0] if reason else 'no output'}; "
        "nothing was published (move the files git names out of the way, then merge again)"
    )


def recover(layout: Layout, root: Path) -> str | None:
    """Finish a fast-forward that a killed `merge` left halfway; a note saying what was done.

    Only files the fast-forward changes are touched, and only while each still holds
    the old or the new content; anything else is named and left alone.
    """
    journal = read_journal(layout)
    if journal is None:
        return None
    worktree, ref = Path(journal.worktree), f"refs/heads/{journal.branch}"
    now = git.head_commit(root, ref)
    if (
        now not in (journal.old, journal.new)
        or not worktree.is_dir()
        or git.current_branch(worktree) != journal.branch
    ):
        clear_journal(layout)
        return f"an interrupted merge of {journal.branch} was found, but the branch moved since"
    ref_lock = git.git_path(worktree, f"{ref}.lock")
    if ref_lock.exists():
        # git writes the new value into the lock before it commits the ref update: a
        # lock holding our candidate was left by the killed fast-forward, no one else's.
        if ref_lock.read_text(errors="replace").strip() != journal.new:
            raise EnvironmentRefused(
                f"{ref_lock} exists: a git command is moving {journal.branch}, or was "
                "killed doing it; when none is running, remove it and merge again"
            )
        head_lock = git.git_path(worktree, "HEAD.lock")  # held (empty) as HEAD points at ref
        if head_lock.exists() and head_lock.stat().st_size == 0:
            head_lock.unlink()
        ref_lock.unlink()
    lock = git.git_path(worktree, "index.lock")
    if lock.exists():
        raise EnvironmentRefused(
            f"{lock} was left by a git command killed during the merge's fast-forward; "
            "if no git command is running, remove it and run `orchestree merge` again"
        )
    files = git.changed_files(root, journal.old, journal.new)
    old_ids = git.blob_ids(root, journal.old, files)
    new_ids = git.blob_ids(root, journal.new, files)
    current = git.hash_files(worktree, files)
    restore: list[str] = []
    delete: list[str] = []
    stuck: list[str] = []
    for name in files:
        have, was, will = current.get(name), old_ids.get(name), new_ids.get(name)
        if have == will:
            continue
        if have == was or (have is None and will is not None):
            (restore if will is not None else delete).append(name)
        else:
            stuck.append(name)
    if stuck:
        raise EnvironmentRefused(
            f"an interrupted merge of {journal.branch} left {', '.join(stuck[:10])} in "
            f"{worktree} holding neither {journal.old[:10]} nor {journal.new[:10]}; "
            "check those files, then run `orchestree merge` again"
        )
    if now == journal.old and len(restore) + len(delete) == len(files):
        clear_journal(layout)  # the fast-forward never started: nothing to finish
        return None
    if now == journal.old and not git.update_ref(root, ref, journal.new, journal.old):
        raise EnvironmentRefused(f"{journal.branch} moved while repairing; merge again")
    git.reset_index(worktree)
    git.restore_files(worktree, restore)
    for name in delete:
        (worktree / name).unlink()
    clear_journal(layout)
    return (
        f"finished an interrupted merge: {journal.branch} is now at {journal.new[:10]} "
        f"(was {journal.old[:10]})"
    )
