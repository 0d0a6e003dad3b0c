"""Claude Code, headless: `claude -p … --output-format json` prints one result object.

Not logged in, it exits 1 at once with `"is_error": true, "result": "Not logged in ·
Please run /login"`; `is_error` decides, whatever the exit code.
"""

from __future__ import annotations

import re

from orchestree.agents.base import LaunchContext, Outcome, Preset, by_exit_code, json_objects

DEFAULT_PERMISSION_MODE = "acceptEdits"
_AUTH = re.compile(
    r"not logged in|/login|invalid api key|authentication_error|oauth token|\b401\b",
    re.IGNORECASE,
)


class Claude(Preset):
    program = "claude"
    install = "npm install -g @anthropic-ai/claude-code"
    login = "run `claude` once and log in with /login, or set ANTHROPIC_API_KEY"
    writable = ("~/.claude", "~/.claude.json", "~/.cache/claude", "~/.config/claude")
    memory_mb = 1500  # users report 1.5-2 GB a session (issue 17)
    # After `--`: `--allowedTools` takes several values, and no prompt is an option.
    prompt_option = ("--",)

    def options(self, ctx: LaunchContext) -> list[str]:
        mode = self.config.permission_mode or DEFAULT_PERMISSION_MODE
        opts = ["-p", "--permission-mode", mode, "--output-format", "json"]
        if ctx.lane.budget_usd is not None:
            opts += ["--max-budget-usd", f"{ctx.lane.budget_usd:g}"]
        opts += self.model_args()
        rework = ctx.lane.rework
        if rework is not None and rework.reason != "rerun" and ctx.lane.session_id:
            # A rework continues the agent's own conversation (`-r, --resume <id>`).
            opts += ["--resume", ctx.lane.session_id]
        # acceptEdits denies shell commands in headless mode; the prompt asks the agent
        # to commit and to report progress, so allow exactly those.
        helper = ctx.helper_command
        opts += ["--allowedTools", "Bash(git add *)", "Bash(git commit *)", f"Bash({helper} *)"]
        return opts

    def classify(self, output: str, exit_code: int) -> Outcome:
        results = [obj for obj in json_objects(output) if obj.get("type") == "result"]
        if not results:
            return by_exit_code(output, exit_code)
        result = results[-1]
        subtype = str(result.get("subtype") or "success")
        failed = bool(result.get("is_error")) or subtype != "success"
        text = result.get("result")
        error = (str(text) if text else f"Claude Code stopped: {subtype}") if failed else None
        cost = result.get("total_cost_usd")
        turns = result.get("num_turns")
        session = result.get("session_id")
        return Outcome(
            ok=not failed,
            error=error,
            auth_failure=bool(error and _AUTH.search(error)),
            session_id=str(session) if session else None,
            num_turns=turns if isinstance(turns, int) else None,
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
        )
