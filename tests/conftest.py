"""Shared fixtures. tests/agents/ needs the real agent CLIs: it runs only under
`make test-agents` (ORCHESTREE_AGENT_TESTS=1), and `make test` says so in one line."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).parent / "fakes"
REAL_AGENT_TESTS = os.environ.get("ORCHESTREE_AGENT_TESTS") == "1"

collect_ignore = [] if REAL_AGENT_TESTS else ["agents"]

# The suite may run inside an orchestree lane (an agent running `make test`): that lane's
# environment would point the tests' `orchestree tracker` calls and helpers at its run's
# tracker, and bind them to its lane (docs/trust.md). Every test makes its own run.
for _name in ("TRACKER", "LANE", "AGENT", "BRANCH", "WORKTREE", "RESULTS_DIR", "PROMPT_FILE"):
    os.environ.pop(f"ORCHESTREE_{_name}", None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REAL_AGENT_TESTS:
        terminalreporter.write_line(
            "tests/agents/ (the real Claude Code, Codex, Gemini and Aider CLIs) not run: "
            "run `make test-agents`"
        )


@pytest.fixture
def fake_agents_path() -> Path:
    """The folder holding fake `claude`, `codex`, `gemini` and `aider`: put it first on
    PATH. See tests/fakes/_fake.py for the FAKE_AGENT_* switches."""
    return FAKES


@dataclass
class FakeAgents:
    """Fake agents first on PATH, each recording its run into `records`."""

    bin: Path
    records: Path
    monkeypatch: pytest.MonkeyPatch

    def set(self, **switches: str) -> None:
        """FAKE_AGENT_<NAME>=value for the agents started from now on (mode="fail")."""
        for name, value in switches.items():
            self.monkeypatch.setenv(f"FAKE_AGENT_{name.upper()}", value)

    def runs(self) -> dict[str, dict[str, Any]]:
        """Records by file stem, `<program>-<lane>`: argv, stdin, cwd, env."""
        return {
            path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.records.glob("*.json"))
        }


@pytest.fixture
def fake_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents_path: Path
) -> FakeAgents:
    records = tmp_path / "fake-agent-records"
    records.mkdir()
    monkeypatch.setenv("PATH", f"{fake_agents_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_AGENT_RECORD", str(records))
    monkeypatch.setenv("FAKE_AGENT_PYTHON", sys.executable)
    for name in ("MODE", "EDIT", "COMMIT", "PROGRESS", "SLEEP", "COST", "TOKENS"):
        monkeypatch.delenv(f"FAKE_AGENT_{name}", raising=False)
    return FakeAgents(bin=fake_agents_path, records=records, monkeypatch=monkeypatch)
