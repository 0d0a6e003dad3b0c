"""Aider: `aider --yes-always … --message PROMPT`.

Its failures do not show in its exit code: with a model but no key it prints
`litellm.AuthenticationError` and exits 0; with neither model nor key `--yes-always`
accepts its own offer of a browser login and waits five minutes. It leaves
`.aider.chat.history.md`, `.aider.input.history` and `.aider.tags.cache.v4/` behind
(see AGENT_EXCLUDES) and edits `.gitignore` unless `--no-gitignore`.
"""

from __future__ import annotations

import re

from orchestree.agents.base import LaunchContext, Outcome, Preset, by_exit_code

NO_MODEL = "No LLM model was specified and no API keys were provided."
_BROWSER_OFFER = "Please open this URL in your browser to connect Aider"
_LITELLM_ERROR = re.compile(r"^litellm\.(\w*Error)\b")


def _paragraph(lines: list[str], start: int) -> list[str]:
    """The lines from `start` to the next blank one (Aider wraps messages at 80)."""
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    return [line.strip() for line in lines[start:end]]


def _retried(following: list[str]) -> bool:
    """Aider prints "Retrying in N seconds..." after an error it will try again."""
    for line in following:
        if _LITELLM_ERROR.match(line.strip()):
            return False
        if line.strip().startswith("Retrying in "):
            return True
    return False


class Aider(Preset):
    program = "aider"
    install = "pipx install aider-chat (or pip install aider-chat)"
    login = (
        'name a model with [agents.aider] model = "..." in orchestree.toml and set that '
        "provider's key (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY)"
    )
    # Its analytics id, caches and the model metadata litellm fetches.
    writable = ("~/.aider", "~/.cache/aider", "~/.cache/litellm")
    memory_mb = 500
    prompt_option = ("--message",)

    def options(self, ctx: LaunchContext) -> list[str]:
        opts = ["--yes-always", "--no-gitignore", "--no-check-update", "--no-analytics"]
        return opts + self.model_args()

    def classify(self, output: str, exit_code: int) -> Outcome:
        lines = output.splitlines()
        if NO_MODEL in output or _BROWSER_OFFER in output:
            return Outcome(
                ok=False,
                error=f"{NO_MODEL} (Aider offered a browser login; a lane has no browser)",
                auth_failure=True,
            )
        failure: Outcome | None = None
        for i, line in enumerate(lines):
            match = _LITELLM_ERROR.match(line.strip())
            if not match:
                continue
            said = _paragraph(lines, i)
            rest = next((j for j in range(i + len(said), len(lines)) if lines[j].strip()), None)
            if rest is not None and not _LITELLM_ERROR.match(lines[rest].strip()):
                said += _paragraph(lines, rest)
            if _retried(lines[i + 1 : i + 12]):
                continue  # Aider tries again; only an error it gives up on counts
            failure = Outcome(
                ok=False,
                error=" ".join(said),
                auth_failure=match.group(1) == "AuthenticationError",
            )
        if failure is not None:
            return failure
        return by_exit_code(output, exit_code)

    def fatal_from_line(self, line: str) -> str | None:
        if _BROWSER_OFFER in line:
            return "Aider is waiting for a browser login; no model or key is configured"
        return None
