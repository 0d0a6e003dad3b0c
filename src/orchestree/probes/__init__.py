"""Probes: analyses of a repository that report gaps a lane could fix (DESIGN.md §7).

Built-in probes need no LLM. Each is a function `(root, ProbeOptions) -> ProbeResult`,
run by the runner inside the probe's worktree through the entry point

    python -m orchestree.probes <builtin> --root . --out docs/_generated/<id> \\
        --probe-id <id> [--command "<cmd>"] [--timeout-s N]

which writes `state_probe.json` (validated) and `state_probe.md`. Agent probes get
`agent_probe_prompt()` and write the same JSON; `load_probe_output()` checks it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from orchestree.models import ProbeResult
from orchestree.probes.agent import agent_probe_prompt
from orchestree.probes.common import ProbeError, ProbeOptions
from orchestree.probes.output import (
    RESULT_JSON,
    RESULT_MD,
    ProbeOutputError,
    load_probe_output,
    write_probe_output,
)

__all__ = [
    "BUILTIN_PROBES",
    "RESULT_JSON",
    "RESULT_MD",
    "ProbeError",
    "ProbeOptions",
    "ProbeOutputError",
    "agent_probe_prompt",
    "load_probe_output",
    "run_builtin",
    "write_probe_output",
]

# Built-in probe → "module:function"; modules are imported only when their probe runs.
BUILTIN_PROBES: dict[str, str] = {
    "inventory": "orchestree.probes.inventory:probe_inventory",
    "markers": "orchestree.probes.markers:probe_markers",
    "tests": "orchestree.probes.testsuite:probe_tests",
    "lint": "orchestree.probes.lint:probe_lint",
}

ProbeFunction = Callable[[Path, ProbeOptions], ProbeResult]


def builtin(name: str) -> ProbeFunction:
    """The function of the built-in probe `name`; a ProbeError names the known ones."""
    if name not in BUILTIN_PROBES:
        known = ", ".join(BUILTIN_PROBES)
        raise ProbeError(f"unknown built-in probe {name!r} (known: {known})")
    module, function = BUILTIN_PROBES[name].split(":")
    probe: ProbeFunction = getattr(importlib.import_module(module), function)
    return probe


def run_builtin(name: str, root: Path, options: ProbeOptions) -> ProbeResult:
    """Run a built-in probe on the repository at `root` and return what it found."""
    return builtin(name)(root, options)
