"""The exception types the CLI turns into exit codes (DESIGN.md §1).

Every error carries one line for the user: what is wrong and what to do.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_LANES_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 70  # a bug in orchestree: the message says to rerun with --debug


class OrchestreeError(Exception):
    """Base class: a problem the user can act on. `exit_code` is what the CLI returns."""

    exit_code = EXIT_USAGE


class UserError(OrchestreeError):
    """Bad usage or bad input (exit 2). Nothing was changed."""

    exit_code = EXIT_USAGE


class EnvironmentRefused(OrchestreeError):
    """The environment refuses: not a git repo, dirty base worktree, lock held (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class TrackerError(EnvironmentRefused):
    """The tracker file is torn, invalid, or from a newer version: every command stops."""


class LockTimeout(EnvironmentRefused):
    """A lock could not be taken in time; the message names the holder's pid."""


class GitError(OrchestreeError):
    """A git command failed. Shows the command, its exit code and what it printed."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, cmd: tuple[str, ...], code: int, stderr: str) -> None:
        self.cmd = cmd
        self.code = code
        self.stderr = stderr
        lines = stderr.strip().splitlines()
        # git's own verdict ("fatal: Unable to create '…/index.lock': File exists.") names
        # the thing at fault; the advice lines after it do not.
        said = [line for line in lines if line.startswith(("fatal:", "error:"))]
        last = (said or lines or ["no output"])[-1 if not said else 0]
        super().__init__(f"`{' '.join(cmd)}` failed with exit code {code}: {last}")
