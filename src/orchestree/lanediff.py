"""A lane's diff: what its agent changed, from where the lane started (issue 16).

The start is the lane's merge base with the base branch, or, for a lane that depends
on others, the start commit recorded when it began (its dependencies' work merged in:
not the lane's own change). A lane whose worktree is there also shows the work not
committed yet, read as the conflict radar reads it: `git add -A` into a scratch copy
of the worktree's index, through its admin folder (`git.working_tree`), so neither
the worktree, its index nor its branch is touched.

`orchestree diff` shows it; the web monitor serves `as_json` at
`/api/lanes/<lane>/diff`, with the patch cut at `PATCH_LIMIT` bytes.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestree import git, worktree_guard
from orchestree.errors import UserError
from orchestree.layout import Layout, branch
from orchestree.models import Lane, Tracker

PATCH_LIMIT = 2 * 1024 * 1024  # bytes of patch the JSON carries; `truncated` says so


@dataclass(frozen=True)
class FileDiff:
    path: str
    added: int
    removed: int
    binary: bool


@dataclass(frozen=True)
class Sides:
    """The two ends of a lane's diff."""

    lane: str
    start: str  # where the lane's change is counted from
    head: str  # the lane branch's head
    new: str  # `head`, or a tree of the worktree's files when they differ from it
    uncommitted: bool  # `new` holds work not committed yet


@dataclass(frozen=True)
class LaneDiff:
    lane: str
    start: str
    head: str
    uncommitted: bool
    files: list[FileDiff] = field(default_factory=list)
    patch: str = ""
    truncated: bool = False

    def as_json(self) -> dict[str, Any]:
        """The shape `orchestree diff --json` prints and the web monitor serves."""
        return {
            "lane": self.lane,
            "start": self.start,
            "head": self.head,
            "uncommitted": self.uncommitted,
            "files": [
                {"path": f.path, "added": f.added, "removed": f.removed, "binary": f.binary}
                for f in self.files
            ],
            "patch": self.patch,
            "truncated": self.truncated,
        }


def sides(layout: Layout, tracker: Tracker, lane_id: str) -> Sides:
    """Where `lane_id`'s diff starts and ends; UserError for a lane the tracker does not
    know or one with no commit yet. Writes nothing but unreferenced git objects."""
    lane = tracker.lanes.get(lane_id)
    if lane is None:
        raise UserError(f"no lane {lane_id!r} in the tracker; `orchestree status` lists the lanes")
    root = layout.root
    head = git.head_commit(root, f"refs/heads/{branch(lane_id)}") or lane.head_commit
    if head is None or git.head_commit(root, head) is None:
        raise UserError(
            f"lane {lane_id!r} has no commit to compare yet (it is {lane.status}); "
            "run `orchestree execute` first"
        )
    start = _start(root, tracker, lane, head)
    tree = _working_tree(layout, lane_id, head)
    uncommitted = tree is not None and git.changed_files(root, head, tree) != []
    return Sides(lane_id, start, head, tree if tree and uncommitted else head, uncommitted)


def _start(root: Path, tracker: Tracker, lane: Lane, head: str) -> str:
    """The dependencies' merged work is not the lane's change: a dependent lane counts
    from its recorded start. Any other from its merge base with the base branch, or
    from its start once merged (the base then holds the head itself)."""
    recorded = (
        lane.start_commit
        if lane.start_commit and git.head_commit(root, lane.start_commit)
        else None
    )
    if lane.depends_on and recorded:
        return recorded
    base = git.head_commit(root, f"refs/heads/{tracker.base_branch}") or tracker.base_commit
    fork = git.merge_base(root, head, base) if base else None
    if fork is None or (fork == head and recorded):
        return recorded or head
    return fork


def _working_tree(layout: Layout, lane_id: str, head: str) -> str | None:
    """A tree of the files in the lane's worktree, or None when it has none that is
    still its own (an agent that moved its HEAD or links: its commits are what count)."""
    path = layout.worktree(lane_id)
    if not path.is_dir():
        return None
    check = worktree_guard.verify(layout.root, path, branch(lane_id))
    if check.admin is None or check.problem is not None:
        return None
    with tempfile.TemporaryDirectory(prefix="orchestree-diff-") as scratch:
        index = Path(scratch) / "index"
        with contextlib.suppress(FileNotFoundError):  # none yet: git starts empty
            shutil.copyfile(check.admin / "index", index)
        return git.working_tree(check.admin, path, index)


def lane_diff(layout: Layout, tracker: Tracker, lane_id: str, limit: int = PATCH_LIMIT) -> LaneDiff:
    """`lane_id`'s change with its files' line counts and a patch of at most `limit`
    bytes (cut at a line's end)."""
    ends = sides(layout, tracker, lane_id)
    counts = git.diff_counts(layout.root, ends.start, ends.new)
    files = [FileDiff(c.path, c.added, c.removed, c.binary) for c in counts]
    raw = git.diff_bytes(layout.root, ends.start, ends.new)
    truncated = len(raw) > limit
    if truncated:
        cut = raw.rfind(b"\n", 0, limit + 1)
        raw = raw[: cut + 1 if cut >= 0 else limit]
    patch = raw.decode("utf-8", errors="replace")
    return LaneDiff(ends.lane, ends.start, ends.head, ends.uncommitted, files, patch, truncated)


VIEWS: dict[str, tuple[str, ...]] = {"patch": (), "stat": ("--stat",), "names": ("--name-only",)}


def as_text(root: Path, ends: Sides, view: str) -> str:
    """The diff as plain text: a patch, a `--stat` or the files' names (`VIEWS`)."""
    raw = git.diff_bytes(root, ends.start, ends.new, *VIEWS[view])
    return raw.decode("utf-8", errors="replace")


def to_terminal(root: Path, ends: Sides, view: str) -> int:
    """The diff on our terminal, through git's pager and colours; git's exit code."""
    return git.diff_to_terminal(root, ends.start, ends.new, *VIEWS[view])
