"""The built-in probes on orchestree's own repository: they complete and validate.

The `tests` probe gets a command that runs one small test module: left to detect
pytest it would run this whole suite, including this test, again and again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _probe_repos import ROOT, TOOLS_PATH, git
from orchestree.planner import load_results, make_plan

TESTS_COMMAND = f"{sys.executable} -m pytest -q tests/test_schemas.py"


def test_all_builtin_probes_run_on_this_repository(tmp_path: Path) -> None:
    generated = tmp_path / "_generated"
    status_before = git(ROOT, "status", "--porcelain", "--untracked-files=all")
    for probe, extra in [
        ("inventory", []),
        ("markers", []),
        ("lint", []),
        ("tests", ["--command", TESTS_COMMAND]),
    ]:
        argv = [sys.executable, "-m", "orchestree.probes", probe, "--root", "."]
        argv += ["--out", str(generated / probe), "--probe-id", probe, *extra]
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env={**os.environ, "PATH": TOOLS_PATH},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"{probe}: {proc.stderr}"
    results, problems = load_results(generated)
    assert problems == []
    by_probe = {r.probe: r for r in results}
    assert sorted(by_probe) == ["inventory", "lint", "markers", "tests"]
    assert by_probe["inventory"].metrics["by_language"]["Python"]["files"] > 20
    assert by_probe["tests"].metrics["runner"] == "pytest"
    assert by_probe["tests"].metrics["failed"] == 0
    assert by_probe["tests"].metrics["passed"] >= 3
    assert by_probe["lint"].metrics["linter"] == "ruff"
    plan = make_plan(results, default_agent="claude", reserved=list(by_probe))
    assert plan.sources == ["inventory", "lint", "markers", "tests"]
    # Nothing was written into the repository itself (no cache, no bytecode, no report).
    assert git(ROOT, "status", "--porcelain", "--untracked-files=all") == status_before
