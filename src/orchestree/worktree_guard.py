"""Is a lane's worktree still the one orchestree made? Asked before orchestree acts in it.

An agent can write everything in its worktree, the `.git` link included. Before
orchestree commits what an agent left, merges, or cleans up, it checks what it
knows from its own side: the admin folder `<git-common-dir>/worktrees/<name>` whose
`gitdir` points back at the worktree, a worktree `.git` file pointing at that admin
folder, a worktree path that is a real folder (not a symlink), and a HEAD that is
still the lane's branch. git then runs with `GIT_DIR`/`GIT_WORK_TREE` taken from
that admin folder, never from the agent-controlled `.git` file. Commits the agent
made off its branch (a detached HEAD, another branch) are kept under
`refs/orchestree/attempts/<lane>/<n>` and named.

Standard library and `orchestree.git` only: the lane supervisor imports it.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from orchestree import git

# orchestree's own top-level paths: never committed by a lane, never merged.
ORCH_PATHS = (".orchestration",)
UNTRUSTED = "untrusted"  # the attempt's reason when the agent subverted its worktree


@dataclass(frozen=True)
class WorktreeCheck:
    admin: Path | None  # the admin folder, when the links between the two are intact
    problem: str | None  # what the agent changed, in words; None when all is as we left it
    off_branch: str | None = None  # the commit HEAD is at, when it left the lane branch


def _read(path: Path) -> str | None:
    """A small regular file's text; None when it is missing, a symlink or not a file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > 4096:
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _same(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _admin_of(common: Path, path: Path) -> Path | None:
    """The admin folder whose `gitdir` names `path/.git` (git names it after the
    folder, with a number when that name was taken)."""
    dotgit = Path(os.path.realpath(path.parent)) / path.name / ".git"
    named = common / "worktrees" / path.name
    candidates = [named]
    if (common / "worktrees").is_dir():
        candidates += sorted(p for p in (common / "worktrees").iterdir() if p != named)
    for admin in candidates:
        gitdir = _read(admin / "gitdir")
        if gitdir and os.path.normpath(gitdir) == os.path.normpath(dotgit):
            return admin
    return None


def verify(root: Path, path: Path, branch: str, common: Path | None = None) -> WorktreeCheck:
    """Check the worktree at `path` is still the lane's own (see the module's text).
    `common`: the repository's common git dir, when the caller has asked git already."""
    rel = _shown(root, path)
    if path.is_symlink():
        target = _oneline(os.readlink(path))
        return WorktreeCheck(
            None, f"the agent replaced its worktree {rel} with a symlink to {target}"
        )
    if not path.is_dir():
        return WorktreeCheck(None, f"the agent removed its worktree {rel}")
    common = common or git.common_dir(root)
    admin = _admin_of(common, path)
    if admin is None:
        return WorktreeCheck(None, f"{rel} is no longer registered as a worktree of {root}")
    problem = _link_problem(path, admin, common, rel)
    if problem:
        return WorktreeCheck(None, problem)
    head = _read(admin / "HEAD") or ""
    if head == f"ref: refs/heads/{branch}":
        return WorktreeCheck(admin, None)
    # The agent wrote this file: only a ref name or a commit id goes on to git.
    ref = head.removeprefix("ref: ")
    if head.startswith("ref: ") and _REF.fullmatch(ref):
        at = git.head_commit(root, ref)
        other = ref.removeprefix("refs/heads/")
        return WorktreeCheck(admin, f"the agent switched its worktree to branch {other}", at)
    at = head if _SHA.fullmatch(head) and git.head_commit(root, head) else None
    shown = f" at {head[:10]}" if at else f" ({_oneline(head) or 'empty'})"
    return WorktreeCheck(admin, f"the agent detached its worktree's HEAD{shown}", at)


def verify_clone(clone: Path, branch: str) -> WorktreeCheck:
    """Check a clone of its own (a Dask worker's) is still the lane's: a real `.git`
    folder, which is then its admin folder, and a HEAD still on the lane's branch."""
    dotgit = clone / ".git"
    if clone.is_symlink() or dotgit.is_symlink() or not dotgit.is_dir():
        problem = f"the agent replaced {dotgit} (or its clone) with something else"
        return WorktreeCheck(None, problem)
    head = _read(dotgit / "HEAD") or ""
    if head != f"ref: refs/heads/{branch}":
        shown = _oneline(head)[:60] or "unreadable"
        return WorktreeCheck(None, f"the agent left its branch {branch} (HEAD is {shown})")
    return WorktreeCheck(dotgit, None)


_REF = re.compile(r"refs/[A-Za-z0-9._/-]{1,200}")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _oneline(text: str) -> str:
    """Agent-written text, shown on one line and short."""
    return " ".join(text.split())[:120]


def _link_problem(path: Path, admin: Path, common: Path, rel: str) -> str | None:
    dotgit = path / ".git"
    if not os.path.lexists(dotgit):
        return f"the agent deleted {rel}/.git, its worktree's link to the repository"
    link = _read(dotgit)
    if link is None:
        return f"the agent replaced {rel}/.git with something other than a plain file"
    target = link.removeprefix("gitdir:").strip()
    if not link.startswith("gitdir:") or not _same(path / target, admin):
        return f"the agent rewrote {rel}/.git to point at {_oneline(target) or 'nothing'}"
    commondir = _read(admin / "commondir")
    if commondir is None or not _same(admin / commondir, common):
        return f"the admin folder {admin} of {rel} no longer points at this repository"
    return None


def _shown(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class LeftWork:
    head: str | None  # the lane branch's head after committing, when all was well
    problem: str | None  # why nothing was committed: what the agent changed


def keep_off_branch(
    root: Path, check: WorktreeCheck, lane_id: str, attempt: int, branch: str
) -> str | None:
    """Keep the commits the agent made off its lane branch; the ref, or None if none."""
    commit = check.off_branch
    if commit is None:
        return None
    lane_head = git.head_commit(root, f"refs/heads/{branch}")
    if lane_head is not None and git.is_ancestor(root, commit, lane_head):
        return None
    return git.keep_attempt_head(root, lane_id, attempt, commit)


def commit_left_work(
    root: Path,
    path: Path,
    branch: str,
    lane_id: str,
    attempt: int,
    message: str,
    keep_out: list[str],
    setup_made: dict[str, str] | None = None,
    clone: bool = False,
) -> LeftWork:
    """Verify the worktree (`clone`: the clone at `path`, which is also `root`), then
    commit what the agent left, through the admin folder."""
    check = verify_clone(path, branch) if clone else verify(root, path, branch)
    if check.problem or check.admin is None:
        ref = keep_off_branch(root, check, lane_id, attempt, branch)
        kept = f"; its commits are kept at {ref}" if ref else ""
        return LeftWork(None, f"{check.problem}{kept}; nothing was committed")
    env = git.worktree_env(check.admin, path)
    head = git.commit_all(path, message, env=env, keep_out=keep_out, setup_made=setup_made)
    return LeftWork(head or git.head_commit(root, f"refs/heads/{branch}"), None)


def protected_paths(worktree_root: str, helper_copied: bool, includes: list[str]) -> list[str]:
    """What a lane's leftover commit never takes: orchestree's folders, the helper copy,
    and the files copied in from `.worktreeinclude` (the user's `.env`)."""
    paths = [*ORCH_PATHS, worktree_root.strip("/")]
    if helper_copied:
        paths.append("access_tracker.py")
    return paths + [p for p in includes if p not in paths]


def copy_regular(source: Path, target_root: Path, rel: str) -> bool:
    """Copy the regular file `source` to `target_root/rel`, only inside `target_root`,
    never through or onto a symlink and never over an existing file. False when skipped."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return False
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        info = os.fstat(src_fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        folder = target_root
        for part in parts[:-1]:
            folder = folder / part
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a symlink is not a folder
                    return False
            except FileNotFoundError:
                os.mkdir(folder)
        try:
            dst_fd = os.open(folder / parts[-1],
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             stat.S_IMODE(info.st_mode))  # fmt: skip
        except FileExistsError:
            return False
        try:
            while chunk := os.read(src_fd, 1 << 16):
                os.write(dst_fd, chunk)
        finally:
            os.close(dst_fd)
        return True
    finally:
        os.close(src_fd)


def worktree_root_problem(root: Path, value: str, ask_git: bool = True) -> str | None:
    """Why `[worktree] root` cannot hold lane worktrees, or None.

    It must be a folder inside the repository that git does not track: orchestree
    excludes it from git and removes what is in it, so `.git`, `.orchestration`, `..`,
    a folder outside the repository or a tracked folder like `src` would lose work.
    `ask_git=False` checks the path alone (no git call, for every command).
    """
    what = f"[worktree] root = {value!r}"
    fix = 'set it to an untracked folder inside the repository, e.g. ".worktrees"'
    rel = os.path.relpath(os.path.normpath(root / value), root)
    parts = Path(rel).parts
    if not value.strip() or rel == "." or ".." in Path(value).parts or parts[0] == "..":
        return f"{what} is not a folder inside the repository; {fix}"
    if parts[0] in (".git", *ORCH_PATHS):
        owner = "git" if parts[0] == ".git" else "orchestree"
        return f"{what} is in {parts[0]}, which belongs to {owner}; {fix}"
    top, resolved = Path(os.path.realpath(root)), Path(os.path.realpath(root / rel))
    if resolved == top or not resolved.is_relative_to(top):
        return f"{what} leads outside the repository (through a symlink); {fix}"
    if ask_git and git.is_tracked(root, rel):
        return f"{what} is a folder git tracks (orchestree would exclude it from git); {fix}"
    return None
