"""Real repositories and scripted agents for the pipeline tests (probes, plan, full).

`pipeline_repo` builds a committed repository in `tmp_path` with a fixed git identity
and this interpreter's bin folder on PATH (the `tests` and `lint` probes look for
pytest and ruff there). The CLI runs in this process through `orchestree.cli.main`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _probe_repos import USER_TOOLS
from exec_helpers import IDENTITY, PYTHON, Result, cli, git, write_script

BIN = str(Path(sys.executable).parent)

# One TODO, one FIXME, one failing pytest test and one ruff finding (F401 in the file
# that also holds the FIXME, so two lanes overlap there).
BUGGY = {
    "conftest.py": "",
    "README.md": "# buggy\n",
    "src/app.py": "def add(a, b):\n    # TODO: handle overflow\n    return a + b\n",
    "src/util.py": "import os\n\n\ndef name():\n    return 'util'  # FIXME: read the config\n",
    "tests/test_app.py": (
        "from src.app import add\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_add_negative():\n    assert add(-1, -1) == -3\n"
    ),
}

SHELL_DEFAULTS = """\
[defaults]
agent = "shell"
kill_grace_s = 0.5
"""
# The same, running only the probes the test configures (not the four built-ins too).
SHELL_ONLY_CONFIGURED = SHELL_DEFAULTS + "builtin_probes = false\n"


def pipeline_repo(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    config: str | None = None,
    *,
    init: bool = True,
) -> Path:
    """A repository on `main` with `files` (and `config` as orchestree.toml) committed."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(key, raising=False)
    path = os.pathsep.join([USER_TOOLS, BIN, os.environ.get("PATH", "")])
    monkeypatch.setenv("PATH", path)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "commit.gpgsign", "false")
    if config is not None:
        files = {**files, "orchestree.toml": config}
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    if init:
        assert cli(repo, "init").code == 0
    return repo


def script_agent(tmp_path: Path, name: str, body: str) -> str:
    """An `[agents.<name>]` section running a Python script `body` with the lane id as
    `lane` (and json, os, subprocess, sys, time, Path imported)."""
    script = write_script(tmp_path / f"{name}.py", f"lane = sys.argv[1]\n{body}")
    argv = json.dumps([PYTHON, str(script), "{lane}"])
    return f"\n[agents.{name}]\ncommand = {argv}\n"


def probe_result(probe: str, gaps: list[dict[str, Any]]) -> str:
    """A valid `state_probe.json` text."""
    result = {"probe": probe, "summary": f"{len(gaps)} gap(s)", "metrics": {}, "gaps": gaps}
    return json.dumps(result, indent=2) + "\n"


def tracker_bytes(repo: Path) -> bytes:
    return (repo / ".orchestration" / "tracker.json").read_bytes()


def lanes(repo: Path) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(tracker_bytes(repo))["lanes"]
    return data


def events(repo: Path) -> list[dict[str, Any]]:
    text = (repo / ".orchestration" / "events.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def phases(repo: Path) -> list[tuple[int, str]]:
    """The tracker's (phase, status) as events.jsonl saw them change, in order."""
    seen = [(e["tracker"]["phase"], e["tracker"]["status"]) for e in events(repo) if "tracker" in e]
    return [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p]


def on_main(repo: Path, folder: str) -> list[str]:
    """The files committed on main under `folder`."""
    return git(repo, "ls-tree", "-r", "--name-only", "main", folder).splitlines()


def base_is_clean(repo: Path) -> bool:
    """No change to tracked files and nothing untracked but the plan file."""
    status = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    return all(line == "?? docs/_generated/execution_plan.json" for line in status)


def one_line_error(result: Result, code: int = 2) -> str:
    """The refusal's single stderr line (no traceback), after checking the exit code."""
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("orchestree: ")
    assert "Traceback" not in result.err + result.out
    return lines[0]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
