"""`[merge] verify`: the user's check, run on each merge candidate in a scratch worktree.

The scratch worktree is detached, lives at `.orchestration/verify-<pid>` (outside the
user's files, excluded from git), is reused from one candidate to the next and removed
afterwards; one left by a killed merge is swept by the next merge or `cleanup`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestree import git, procs

if TYPE_CHECKING:
    from orchestree.repo import Repo

TAIL_LINES, TAIL_CHARS = 20, 2000


class Verifier:
    """Runs `[merge] verify` in a scratch worktree at each candidate; removed afterwards."""

    def __init__(self, repo: Repo, command: str, timeout: float) -> None:
        self.root, self.command, self.timeout = repo.root, command, timeout
        self.path = repo.layout.orch / f"verify-{os.getpid()}"
        self.made = False

    def run(self, commit: str, lane_id: str) -> str | None:
        """None when the command passes at `commit`; else the tail of what it printed."""
        if self.made:
            git.checkout_clean(self.path, commit)
        else:
            git.worktree_add_detached(self.root, self.path, commit)
            self.made = True
        token = secrets.token_hex(8)
        env = git.git_env({"ORCHESTREE_LANE": lane_id, "ORCHESTREE_CANDIDATE": commit,
                           procs.TREE_ENV: token})  # fmt: skip
        proc = procs.spawn(
            ["sh", "-c", self.command], cwd=self.path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        tree = procs.Tree(pgid=proc.pid, root=proc.pid, token=token)
        try:
            output, _ = proc.communicate(timeout=self.timeout)
            verdict = f"exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            # Its group and every process of its tree, a `setsid` one too, at once.
            procs.end_tree(tree, 0.0, reap=proc.poll)
            output, _ = proc.communicate()
            verdict = f"timed out after {self.timeout:g} s"
        except BaseException:  # Ctrl-C: the check, in a session of its own, ends with us
            procs.end_tree(tree, 0.0, reap=proc.poll)
            raise
        if proc.returncode == 0 and verdict.startswith("exited"):
            return None
        tail = "\n".join(output.rstrip().splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]
        return f"verify `{self.command}` {verdict}:\n{tail}".rstrip()

    def close(self) -> None:
        if self.made:
            git.worktree_remove(self.root, self.path, force=True)


@contextlib.contextmanager
def verifier(repo: Repo) -> Iterator[Verifier | None]:
    command = repo.config.merge.verify.strip()
    if not command:
        yield None
        return
    sweep_scratch(repo)
    verifier = Verifier(repo, command, repo.config.merge.verify_timeout_s)
    try:
        yield verifier
    finally:
        verifier.close()


def sweep_scratch(repo: Repo) -> list[Path]:
    """Remove verification worktrees left by merges that were killed; the paths removed."""
    removed = []
    for tree in git.worktree_list(repo.root):
        name = tree.path.name
        if tree.path.parent != repo.layout.orch.resolve() or not name.startswith("verify-"):
            continue
        pid = name.removeprefix("verify-")
        if pid.isdigit() and int(pid) != os.getpid() and procs.alive(int(pid)):
            continue
        git.worktree_remove(repo.root, tree.path, force=True)
        removed.append(tree.path)
    return removed
