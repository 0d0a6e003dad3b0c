"""Where a dependent lane starts: the base commit with its dependencies' heads merged
in, computed in memory (`git merge-tree`), so no worktree is touched to find it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestree import git


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
