"""Where lanes run (DESIGN.md §12): one interface, whatever runs the agents.

`attempt` holds the contracts and tells one attempt's story: `LaneSpec` in and
`LaneUpdate`s out (the `LaneExecutor` protocol), and between the launcher and the
supervisor the versioned `AttemptSpec` and `AttemptResult` files. `local` runs lanes
in worktrees on this machine; `dask` runs them on a Dask cluster that clones from a
shared remote (`dask_task` is its task). Both start an attempt through the one
launcher, `launch`, whose supervisor (`supervisor`) runs the agent and commits what
it left; `remote` moves commits to and from the cluster's shared remote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestree.errors import UserError

if TYPE_CHECKING:
    from orchestree.executors.attempt import LaneExecutor
    from orchestree.repo import Repo


def open_executor(repo: Repo, run: str, base: str) -> LaneExecutor:
    """The executor `[executor] kind` names, ready for `submit`."""
    kind = repo.config.executor.kind
    if kind == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserError(
                '[executor] kind = "dask" needs Dask: install it with '
                "pip install 'orchestree[dask]'"
            ) from None
        from orchestree.executors.dask import DaskExecutor

        return DaskExecutor(repo, run, base)
    from orchestree.executors.local import LocalExecutor

    return LocalExecutor(repo)
