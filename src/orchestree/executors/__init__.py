"""Where lanes run (DESIGN.md §12): one interface, whatever runs the agents.

`attempt` is the contract (`LaneSpec` in, `LaneUpdate`s out, the `LaneExecutor`
protocol); `local` runs lanes in worktrees on this machine; `dask` runs them on a Dask
cluster that clones from a shared remote. Both start an attempt through `launch`,
whose supervisor (`supervisor`) runs the agent; `remote` moves commits to and from
the cluster's shared remote.
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
