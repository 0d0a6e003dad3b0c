"""The `shell` preset: each task of the lane run in turn by `sh -c`, stopping at the
first failure. The tasks are passed as arguments, so nothing is quoted or pasted."""

from __future__ import annotations

from orchestree.agents.base import LaunchContext, Preset

# `exit "$code"` keeps the failed task's own exit code for the supervisor.
_LOOP = (
    'for task do printf "+ %s\\n" "$task"; sh -c "$task" || { code=$?; '
    'printf "task failed with exit code %s: %s\\n" "$code" "$task"; exit "$code"; }; done'
)


class Shell(Preset):
    program = "sh"
    install = "`sh` is part of every POSIX system; check PATH"
    login = "the shell preset needs no login"
    memory_mb = 50

    def arguments(self, ctx: LaunchContext, prompt: str) -> list[str]:
        tasks = ctx.lane.tasks or ([ctx.lane.prompt] if ctx.lane.prompt else [])
        return ["-c", _LOOP, "sh", *tasks]
