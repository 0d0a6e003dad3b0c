from __future__ import annotations

import sys
from pathlib import Path

import pytest

from _probe_repos import BUGGY, TOOLS_PATH, make_repo, probe_output, run_probe
from orchestree.probes import ProbeError, ProbeOptions
from orchestree.probes.lint import probe_lint

RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_finds_exactly_the_unused_import(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", BUGGY)
    proc = run_probe(repo, "lint")
    assert proc.returncode == 0, proc.stderr
    result = probe_output(repo, "lint")
    assert result.metrics["linter"] == "ruff"
    assert result.metrics["files"] == {"src/util.py": 1}
    assert result.metrics["by_code"] == {"F401": 1}
    assert [(g.id, g.paths, g.priority) for g in result.gaps] == [
        ("lint-src-util.py", ["src/util.py"], "medium")
    ]
    assert result.gaps[0].tasks[0].startswith("src/util.py:1:8: F401 `os` imported but unused")


def test_configured_linter_with_text_output_groups_findings_by_file(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "a.py": "import os\nimport sys\n",
        "pkg/b.py": "x = undefined_name\n",
        "vendor/c.py": "import json\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    command = f"{RUFF} check --output-format concise --no-cache ."
    result = probe_lint(repo, ProbeOptions(probe_id="style", command=command))
    assert result.metrics["files"] == {"a.py": 2, "pkg/b.py": 1}  # vendored findings dropped
    assert [g.id for g in result.gaps] == ["style-a.py", "style-pkg-b.py"]
    assert result.gaps[0].title == "Fix 2 lint findings in a.py"
    assert [t.split(" ")[:2] for t in result.gaps[0].tasks[:2]] == [
        ["a.py:1:8:", "F401"],
        ["a.py:2:8:", "F401"],
    ]


def test_clean_code_has_no_gaps(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "print('hi')\n"})
    result = probe_lint(repo, ProbeOptions(probe_id="lint", path=TOOLS_PATH))
    assert result.gaps == []
    assert result.summary.endswith("no findings.")


def test_no_linter_on_path_is_a_result_saying_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", BUGGY)
    proc = run_probe(repo, "lint", path=str(tmp_path / "empty-bin"))
    assert proc.returncode == 0, proc.stderr
    result = probe_output(repo, "lint")
    assert result.metrics == {"linter": None}
    assert result.summary.startswith("No linter found")


def test_a_linter_that_cannot_run_fails_the_probe(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    with pytest.raises(ProbeError, match="exited 127 without findings"):
        probe_lint(repo, ProbeOptions(probe_id="lint", command="no-such-linter-xyz ."))
    proc = run_probe(repo, "lint", "--command", "no-such-linter-xyz .")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("probe lint (lint) failed: `no-such-linter-xyz .` exited 127")
    assert not (repo / "docs/_generated/lint/state_probe.json").exists()
