#!/usr/bin/env python3
"""Record what the real agent CLIs print when things go wrong, for the unit tests.

Each case runs one CLI through its orchestree preset in a fresh repository's lane
worktree, with a fresh HOME, no credentials and no API key (tests/agents/harness.py),
and writes tests/agents/data/<cli>-<case>.txt (everything it printed) and .json (its
version, argv, exit code, duration, what it left in the worktree). Temporary paths
are replaced by <tmp> so a re-recording only shows what the programs changed.

    scripts/install-agents.sh            # once
    .venv/bin/python scripts/record-agents.py [CASE ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "agents" / "data"
sys.path.insert(0, str(ROOT / "tests" / "agents"))

import harness  # noqa: E402

BOGUS = "--orchestree-no-such-option"


@dataclass(frozen=True)
class Case:
    name: str
    cli: str
    timeout_s: float
    model: str | None = None
    args: list[str] = field(default_factory=list)
    budget_usd: float | None = None
    permission_mode: str | None = None


CASES = [
    Case("claude-not-logged-in", "claude", 60, model="sonnet", budget_usd=0.5),
    # Run as root (as here, and in many containers), Claude Code refuses this mode.
    Case("claude-bypass-permissions", "claude", 60, permission_mode="bypassPermissions"),
    # Codex retries for ever without network; we keep what it says in 20 s.
    Case("codex-no-network", "codex", 20),
    Case("gemini-no-key", "gemini", 60),
    # Ended at Aider's browser-login offer, as the runner does (fatal_from_line).
    Case("aider-no-model", "aider", 60),
    Case("aider-model-no-key", "aider", 120, model="gpt-4o"),
    *(Case(f"{cli}-unknown-option", cli, 30, args=[BOGUS]) for cli in harness.CLIS),
]


def record(case: Case) -> dict[str, object]:
    preset = harness.preset_for(
        case.cli, model=case.model, args=case.args, permission_mode=case.permission_mode
    )
    with harness.sandbox() as box:
        run = harness.run_real(box, preset, timeout_s=case.timeout_s, budget_usd=case.budget_usd)

        def scrub(text: str) -> str:
            return text.replace(str(box.root), "<tmp>").replace(str(harness.CACHE), "<cache>")

        argv = ["<prompt>" if arg == run.prompt else scrub(arg) for arg in run.argv]
        (DATA / f"{case.name}.txt").write_text(scrub(run.output), encoding="utf-8")
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
        meta: dict[str, object] = {
            "case": case.name,
            "program": case.cli,
            "version": run.version,
            "node": node.stdout.strip(),
            "argv": argv,
            "exit_code": run.exit_code,
            "ended_because": run.ended_because,
            "duration_s": run.duration_s,
            "timeout_s": case.timeout_s,
            "leftovers": [scrub(line) for line in run.leftovers],
            "as_root": os.geteuid() == 0,
            "recorded_on": datetime.now(UTC).date().isoformat(),
            "recorded_by": "scripts/record-agents.py",
        }
    (DATA / f"{case.name}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(names: list[str]) -> int:
    missing = [cli for cli in harness.CLIS if cli not in harness.available()]
    if missing:
        print(f"not installed: {', '.join(missing)}; run scripts/install-agents.sh first")
        return 2
    unknown = set(names) - {case.name for case in CASES}
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}")
        return 2
    DATA.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if names and case.name not in names:
            continue
        meta = record(case)
        print(
            f"{case.name}: {meta['version']} exit {meta['exit_code']} "
            f"in {meta['duration_s']} s ({meta['ended_because'] or 'exited'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
