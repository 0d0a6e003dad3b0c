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
import sys
from collections.abc import Callable
from pathlib import Path

from orchestree.config import check_builtin
from orchestree.layout import GENERATED_DIR
from orchestree.models import ProbeResult, check_lane_id
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
    "check_builtin",
    "load_probe_output",
    "probe_argv",
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
    """The function of the built-in probe `name`."""
    module, function = BUILTIN_PROBES[check_builtin(name)].split(":")
    probe: ProbeFunction = getattr(importlib.import_module(module), function)
    return probe


def probe_argv(
    name: str,
    probe_id: str,
    *,
    out_dir: str | None = None,
    command: str | None = None,
    timeout_s: float | None = None,
) -> list[str]:
    """The argv that runs built-in probe `name` in the current folder (a probe's worktree).

    `out_dir` defaults to `docs/_generated/<probe_id>`. `timeout_s` bounds the probe's
    own command (tests, lint): keep it below the lane's timeout, so a hanging test suite
    is reported as a gap instead of the probe being killed.
    """
    check_builtin(name)
    check_lane_id(probe_id)
    out = out_dir or f"{GENERATED_DIR}/{probe_id}"
    argv = [sys.executable, "-m", "orchestree.probes", name, "--root", "."]
    argv += ["--out", out, "--probe-id", probe_id]
    if command is not None:
        argv += ["--command", command]
    if timeout_s is not None:
        argv += ["--timeout-s", f"{timeout_s:g}"]
    return argv


def run_builtin(name: str, root: Path, options: ProbeOptions) -> ProbeResult:
    """Run a built-in probe on the repository at `root` and return what it found."""
    return builtin(name)(root, options)
