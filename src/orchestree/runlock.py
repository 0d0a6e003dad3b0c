"""The run lock: one orchestrator at a time changes lanes, worktrees and the base branch.

`.orchestration/run.lock` is `flock`ed (DESIGN.md §6) and holds the holder's pid, so a
second `merge`, `cleanup` or `execute` is refused at once with the holder named. The
kernel drops a dead holder's lock: a killed run never leaves it stuck.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from orchestree import access_tracker
from orchestree.errors import EnvironmentRefused
from orchestree.layout import Layout


@contextlib.contextmanager
def run_lock(layout: Layout, doing: str) -> Iterator[None]:
    """Hold the run lock for `doing` (e.g. "merge"); refuse at once if someone holds it."""
    layout.orch.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(access_tracker.locked(str(layout.run_lock), timeout=0))
        except access_tracker.LockTimeoutError as exc:
            who = f"process {exc.holder}" if exc.holder else "another orchestree process"
            raise EnvironmentRefused(
                f"cannot {doing}: {who} holds {layout.run_lock}; wait for it to finish"
            ) from None
        yield
