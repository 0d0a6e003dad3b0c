"""Gemini CLI, headless: `gemini … -p PROMPT`.

In a folder it has not been told to trust (every new worktree) it silently drops
`--yolo`; `GEMINI_CLI_TRUST_WORKSPACE=true` keeps it. With `--output-format json` it
ends with one object holding `session_id` and either `response` or `error`. Without
credentials it exits 41 naming GEMINI_API_KEY.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from orchestree.agents.base import LaunchContext, Outcome, Preset, by_exit_code, json_objects

EXIT_AUTH = 41  # Gemini CLI's FatalAuthenticationError
_AUTH = re.compile(
    r"auth method|GEMINI_API_KEY|API key not valid|UNAUTHENTICATED|\b401\b", re.IGNORECASE
)


class Gemini(Preset):
    program = "gemini"
    install = "npm install -g @google/gemini-cli"
    login = "set GEMINI_API_KEY, or run `gemini` once and choose how to log in"
    extra_env: ClassVar[Mapping[str, str]] = {"GEMINI_CLI_TRUST_WORKSPACE": "true"}
    writable = ("~/.gemini", "~/.cache/gemini-cli")
    memory_mb = 600
    prompt_option = ("-p",)

    def options(self, ctx: LaunchContext) -> list[str]:
        mode = self.config.permission_mode
        opts = ["--approval-mode", mode] if mode else ["--yolo"]
        return [*opts, "--output-format", "json", *self.model_args()]

    def classify(self, output: str, exit_code: int) -> Outcome:
        results = [obj for obj in json_objects(output) if "session_id" in obj or "error" in obj]
        result = results[-1] if results else {}
        session = result.get("session_id")
        error_obj = result.get("error")
        if isinstance(error_obj, dict):
            error: str | None = str(error_obj.get("message") or error_obj)
            code = error_obj.get("code")
        elif exit_code != 0:
            said = next((ln.strip() for ln in output.splitlines() if _AUTH.search(ln)), None)
            error = said or by_exit_code(output, exit_code).error
            code = exit_code
        else:
            return Outcome(
                ok=True, session_id=str(session) if session else None, tokens=_usage(result)
            )
        auth = EXIT_AUTH in (code, exit_code) or bool(error and _AUTH.search(error))
        return Outcome(
            ok=False,
            error=error,
            auth_failure=auth,
            session_id=str(session) if session else None,
            tokens=_usage(result),
        )


def _usage(result: dict[str, Any]) -> dict[str, tuple[int, int]] | None:
    """Tokens per model from `stats.models.<model>.tokens` (`prompt` in; `candidates`
    and `thoughts` out, both billed as output), as `--output-format json` gives them."""
    stats = result.get("stats")
    models = stats.get("models") if isinstance(stats, dict) else None
    found: dict[str, tuple[int, int]] = {}
    for model, entry in (models or {}).items() if isinstance(models, dict) else []:
        tokens = entry.get("tokens") if isinstance(entry, dict) else None
        if not isinstance(tokens, dict) or not isinstance(tokens.get("prompt"), int):
            continue
        out = sum(
            tokens.get(k) or 0 for k in ("candidates", "thoughts") if isinstance(tokens.get(k), int)
        )
        found[str(model)] = (tokens["prompt"], out)
    return found or None
