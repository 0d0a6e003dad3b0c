"""Codex CLI: `codex exec --json` prints one JSON event a line, errors included.

Without network it retries for ever ("Reconnecting... waiting for network"); only the
lane's timeout ends it, so that message is shown as the lane's progress while it waits.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from typing import Any

from orchestree.agents.base import LaunchContext, Outcome, Preset, by_exit_code, json_objects

DEFAULT_SANDBOX = "workspace-write"
NESTED_SANDBOX = "danger-full-access"
_AUTH = re.compile(
    r"\b401\b|unauthori[sz]ed|not logged in|codex login|invalid[_ ]api[_ ]key|incorrect api key",
    re.IGNORECASE,
)
_RECONNECTING = re.compile(r"^Reconnecting\.\.\.\s*(\d+/\d+)")


def _message(event: dict[str, Any]) -> str | None:
    if event.get("type") == "error":
        return str(event.get("message") or "") or None
    if event.get("type") == "turn.failed":
        error = event.get("error")
        return str(error.get("message") or "") or None if isinstance(error, dict) else None
    return None


def _usage(events: list[dict[str, Any]]) -> dict[str, tuple[int, int]] | None:
    """The tokens of every `turn.completed` (`usage`: input_tokens, of which
    cached_input_tokens, and output_tokens); Codex names no model in its events."""
    total_in = total_out = 0
    seen = False
    for event in events:
        usage = event.get("usage") if event["type"] == "turn.completed" else None
        if isinstance(usage, dict):
            tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
            if isinstance(tokens_in, int) and isinstance(tokens_out, int):
                total_in, total_out, seen = total_in + tokens_in, total_out + tokens_out, True
    return {"": (total_in, total_out)} if seen else None


class Codex(Preset):
    program = "codex"
    install = "npm install -g @openai/codex"
    login = (
        "run `codex login` (or `printenv OPENAI_API_KEY | codex login --with-api-key`), "
        "or set CODEX_API_KEY"
    )

    writable = ("~/.codex",)
    memory_mb = 400
    prompt_option = ("--",)

    def options(self, ctx: LaunchContext) -> list[str]:
        # Codex's own sandbox is bubblewrap too; nested inside ours it cannot set up its
        # mounts, so when ours is on Codex is told not to sandbox again (README, "The sandbox").
        default = NESTED_SANDBOX if ctx.sandboxed else DEFAULT_SANDBOX
        sandbox = self.config.permission_mode or default
        return ["exec", "--json", "--sandbox", sandbox, *self.model_args()]

    def classify(self, output: str, exit_code: int) -> Outcome:
        events = [obj for obj in json_objects(output) if isinstance(obj.get("type"), str)]
        if not events:
            return by_exit_code(output, exit_code)
        session = next((e.get("thread_id") for e in events if e["type"] == "thread.started"), None)
        turns = sum(1 for e in events if e["type"] == "turn.completed")
        failed = next((_message(e) for e in events if e["type"] == "turn.failed"), None)
        messages = [m for m in map(_message, events) if m]
        # A reconnect that later succeeded is not a failure; the last event says.
        ended_badly = failed is not None or events[-1]["type"] == "error"
        ok = exit_code == 0 and not ended_badly
        error = None
        if not ok:
            error = failed or (messages[-1] if messages else None)
            error = error or by_exit_code(output, exit_code).error
        return Outcome(
            ok=ok,
            error=error,
            auth_failure=bool(error and _AUTH.search(error)),
            session_id=str(session) if session else None,
            num_turns=turns,
            tokens=_usage(events),
        )

    def progress_from_line(self, line: str) -> str | None:
        if not line.startswith("{"):
            return None
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        message = _message(event) or ""
        if kind == "error" and "waiting for network" in message:
            return "waiting for network"
        if kind == "error" and (match := _RECONNECTING.match(message)):
            return f"reconnecting ({match.group(1)})"
        item = event.get("item")
        if kind == "item.started" and isinstance(item, dict) and item.get("command"):
            return f"running: {str(item['command'])[:80]}"
        if kind == "turn.started":
            return "working"
        return None

    def warnings(self, path: str | None = None) -> list[str]:
        if sys.platform != "linux" or shutil.which("bwrap", path=path):
            return []
        if self.config.permission_mode == "danger-full-access":  # no sandbox at all
            return []
        return [
            f"agent {self.name!r}: Codex's workspace-write sandbox wants bubblewrap on PATH; "
            "install the `bubblewrap` package (without it Codex falls back to its bundled copy)"
        ]
