"""What an attempt cost: the cost its CLI reported, or an estimate from its tokens.

Claude Code reports `total_cost_usd`; Codex and Gemini report token counts only. Those
are priced through one table, USD per million tokens, looked up by model, then by
agent: `[prices.<model or agent>]` in orchestree.toml first, then the built-in table
below (list prices when it was written; a user with other prices overrides them).
A cost made this way is marked as an estimate wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestree.agents import Outcome
from orchestree.config import Config

# (input, output) USD per million tokens. Cached input is priced as input: an estimate
# errs on the side of spending less than the budget allows.
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "codex": (1.25, 10.0),  # Codex CLI's default model, GPT-5-Codex
    "gpt-5-codex": (1.25, 10.0),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "o4-mini": (1.10, 4.40),
    "gemini": (1.25, 10.0),  # Gemini CLI's default model, Gemini 2.5 Pro
    "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
}


@dataclass(frozen=True)
class Cost:
    usd: float | None
    estimated: bool = False


def price(config: Config, names: list[str]) -> tuple[float, float] | None:
    """The first price the table has for one of `names` (a model, then the agent)."""
    for name in names:
        if name in config.prices:
            entry = config.prices[name]
            return entry.input_per_mtok, entry.output_per_mtok
    for name in names:
        if name in BUILTIN_PRICES:
            return BUILTIN_PRICES[name]
    return None


def attempt_cost(config: Config, agent: str, outcome: Outcome) -> Cost:
    """The cost of one attempt: reported, estimated from its tokens, or unknown (None)."""
    if outcome.cost_usd is not None:
        return Cost(outcome.cost_usd)
    if not outcome.tokens:
        return Cost(None)
    configured = config.agents[agent].model if agent in config.agents else None
    total = 0.0
    for model, (tokens_in, tokens_out) in outcome.tokens.items():
        names = [n for n in (model, configured, agent) if n]
        rates = price(config, names)
        if rates is None:
            return Cost(None)  # an unpriced model: no number is better than a wrong one
        total += (tokens_in * rates[0] + tokens_out * rates[1]) / 1_000_000
    return Cost(round(total, 6), estimated=True)


def add(before: float | None, more: float | None) -> float | None:
    """A lane's cost over its attempts: unknown only while no attempt reported one."""
    if before is None:
        return more
    return before if more is None else round(before + more, 6)
