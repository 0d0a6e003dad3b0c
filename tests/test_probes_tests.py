from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from _probe_repos import BUGGY, TOOLS_PATH, git, make_repo, probe_output, run_probe
from orchestree.probes import ProbeError, ProbeOptions
from orchestree.probes.testparse import go_module_path, parse_go_json
from orchestree.probes.testsuite import detect_runner, probe_tests


def options(command: str | None = None, timeout_s: float = 60) -> ProbeOptions:
    return ProbeOptions(probe_id="tests", path=TOOLS_PATH, command=command, timeout_s=timeout_s)


def test_finds_the_failing_pytest_test_and_leaves_the_worktree_clean(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", BUGGY)
    proc = run_probe(repo, "tests")
    assert proc.returncode == 0, proc.stderr
    result = probe_output(repo, "tests")
    assert result.metrics["runner"] == "pytest"
    assert (result.metrics["passed"], result.metrics["failed"]) == (1, 1)
    assert result.metrics["failing_tests"] == ["tests/test_app.py::test_add_negative"]
    assert [(g.id, g.paths, g.priority) for g in result.gaps] == [
        ("tests-tests-test_app.py", ["tests/test_app.py"], "high")
    ]
    assert result.gaps[0].tasks[0] == "Make tests/test_app.py::test_add_negative pass"
    assert result.gaps[0].tasks[-1].startswith("Check with `pytest -q`;")
    assert result.summary == "`pytest -q` failed (exit code 1): 1 passed, 1 failed."
    # No cache, bytecode or report left behind for the runner to commit.
    assert git(repo, "status", "--porcelain", "--untracked-files=all").split() == [
        "??",
        "docs/_generated/tests/state_probe.json",
        "??",
        "docs/_generated/tests/state_probe.md",
    ]


def test_configured_pytest_command_names_classes_and_collection_errors(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "t/test_k.py": "class TestK:\n    def test_x(self):\n        assert 0\n",
        "t/test_broken.py": "import nonexistent_module_xyz\n",
        "t/test_ok.py": "def test_ok():\n    pass\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    result = probe_tests(repo, options(command=f"{sys.executable} -m pytest -q t"))
    assert result.metrics["runner"] == "pytest"
    assert (result.metrics["passed"], result.metrics["failed"], result.metrics["errors"]) == (
        1,
        1,
        1,
    )
    assert sorted(result.metrics["failing_tests"]) == [
        "t/test_broken.py",
        "t/test_k.py::TestK::test_x",
    ]
    assert sorted(g.paths[0] for g in result.gaps) == ["t/test_broken.py", "t/test_k.py"]


def test_configured_shell_command_that_fails(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "x\n"})
    result = probe_tests(repo, options(command="echo boom && exit 3"))
    assert result.metrics["runner"] == "command"
    assert result.metrics["exit_code"] == 3
    assert result.metrics["command"] == "echo boom && exit 3"
    assert [g.id for g in result.gaps] == ["tests-failing"]
    assert "boom" in result.gaps[0].tasks[-1]
    passing = probe_tests(repo, options(command="true"))
    assert passing.gaps == []
    assert passing.summary == "`true` passed."


def test_a_suite_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "x\n"})
    start = time.monotonic()
    result = probe_tests(repo, options(command="sleep 30 & sleep 30", timeout_s=0.5))
    assert time.monotonic() - start < 10
    assert result.metrics["timed_out"] is True
    assert [g.id for g in result.gaps] == ["tests-timeout"]


def test_no_test_suite_is_a_result_saying_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    result = probe_tests(repo, options())
    assert result.metrics == {"runner": None}
    assert result.summary.startswith("No test suite found")
    empty = make_repo(tmp_path / "empty", {"pytest.ini": "[pytest]\n"})
    collected = probe_tests(empty, options())
    assert collected.summary.endswith("collected no tests.")
    assert collected.gaps == []


def test_a_runner_missing_from_path_fails_the_probe_clearly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", BUGGY)
    with pytest.raises(ProbeError, match=r"use pytest but .* no `pytest` is on PATH"):
        probe_tests(repo, ProbeOptions(probe_id="tests", path=str(tmp_path / "nothing")))
    # orchestree's own pytest would test orchestree's packages: it is never used.
    own = str(Path(sys.executable).parent)
    with pytest.raises(ProbeError, match=r"orchestree's own is not used"):
        probe_tests(repo, ProbeOptions(probe_id="tests", path=own))


# A src-layout package whose tests pass only against this checkout's code, and an
# "installed" copy of it (older, VALUE = 1) that a runner would otherwise import.
SRC_LAYOUT: dict[str, str | bytes] = {
    "pyproject.toml": "[tool.pytest.ini_options]\ntestpaths = ['tests']\n",
    "src/mypkg/__init__.py": "VALUE = 2\n",
    "tests/test_value.py": "import mypkg\n\n\ndef test_value():\n    assert mypkg.VALUE == 2\n",
}


def _installed_copy(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    (site / "mypkg").mkdir(parents=True)
    (site / "mypkg" / "__init__.py").write_text("VALUE = 1\n", encoding="utf-8")
    return site


def test_the_suite_tests_the_repository_code_not_an_installed_copy(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SRC_LAYOUT)
    site = _installed_copy(tmp_path)
    # The user's environment has the old copy installed: after PYTHONPATH, as
    # site-packages is.
    env = {"PYTHONPATH": str(site)}
    result = probe_tests(repo, ProbeOptions(probe_id="tests", path=TOOLS_PATH, env=env))
    assert (result.metrics["passed"], result.metrics["failed"]) == (1, 0), result.summary


def test_the_projects_own_virtualenv_runs_the_suite_also_from_a_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SRC_LAYOUT)
    site, used = _installed_copy(tmp_path), tmp_path / "venv-used"
    venv_python = repo / ".venv" / "bin" / "python"  # untracked, as a virtualenv is
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(
        f'#!/bin/sh\necho "$PWD" >> {used}\n'
        f'PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site}" exec {sys.executable} "$@"\n',
        encoding="utf-8",
    )
    venv_python.chmod(0o755)
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree), "HEAD")
    nothing = str(tmp_path / "no-tools")  # no pytest on PATH: the venv's is enough
    for where in (repo, worktree):
        result = probe_tests(where, ProbeOptions(probe_id="tests", path=nothing))
        assert (result.metrics["passed"], result.metrics["failed"]) == (1, 0), result.summary
    assert used.read_text(encoding="utf-8").split() == [str(repo), str(worktree)]


def test_nearly_everything_failing_one_way_is_one_environment_gap(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        f"tests/test_m{i}.py": "import missing_dependency_xyz\n\n\ndef test_x():\n    pass\n"
        for i in range(6)
    }
    files["tests/test_ok.py"] = "def test_ok():\n    pass\n"
    repo = make_repo(tmp_path / "repo", files)
    result = probe_tests(repo, options())
    assert [(g.id, g.priority) for g in result.gaps] == [("tests-environment", "high")]
    gap = result.gaps[0]
    assert "6 of 7 tests fail the same way" in gap.title
    assert "No module named 'missing_dependency_xyz'" in gap.title
    assert "not a bug per test" in gap.tasks[0]
    assert result.metrics["environment_problem"] == gap.title


def test_npm_test_with_node_test_runner(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "package.json": json.dumps({"name": "demo", "scripts": {"test": "node --test"}}),
        "test/math.test.js": (
            "const test = require('node:test');\nconst assert = require('node:assert');\n"
            "test('adds', () => assert.strictEqual(1 + 1, 2));\n"
            "test('breaks', () => assert.strictEqual(1 + 1, 3));\n"
        ),
    }
    repo = make_repo(tmp_path / "repo", files)
    result = probe_tests(repo, options())
    assert result.metrics["runner"] == "npm"
    assert (result.metrics["passed"], result.metrics["failed"]) == (1, 1)
    assert [(g.id, g.paths) for g in result.gaps] == [
        ("tests-test-math.test.js", ["test/math.test.js"])
    ]
    assert result.gaps[0].tasks[0] == "Make breaks pass"


def test_cargo_test(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "Cargo.toml": '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n',
        "src/lib.rs": "#[cfg(test)]\nmod tests {\n    #[test]\n    fn ok() {}\n}\n",
        "tests/integ.rs": "#[test]\nfn breaks() { assert_eq!(1 + 1, 3); }\n",
    }
    repo = make_repo(tmp_path / "repo", files)
    result = probe_tests(repo, options())
    assert result.metrics["runner"] == "cargo"
    assert (result.metrics["passed"], result.metrics["failed"]) == (1, 1)
    assert [(g.id, g.paths) for g in result.gaps] == [("tests-tests-integ.rs", ["tests/integ.rs"])]
    assert not (repo / "target").exists()  # built outside the worktree


def test_go_test_json_events() -> None:
    # Go is not installed here: the parser reads the event stream `go test -json` prints.
    events = [
        {"Action": "run", "Package": "example.com/m/calc", "Test": "TestAdd"},
        {"Action": "pass", "Package": "example.com/m/calc", "Test": "TestAdd"},
        {"Action": "fail", "Package": "example.com/m/calc", "Test": "TestSub"},
        {"Action": "fail", "Package": "example.com/m/calc"},
        {"Action": "skip", "Package": "example.com/m", "Test": "TestSlow"},
        {"Action": "fail", "Package": "example.com/m/broken"},
    ]
    output = "\n".join(json.dumps(e) for e in events) + "\nFAIL\n"
    module = go_module_path('module "example.com/m"\n\ngo 1.22\n')
    report = parse_go_json(output, module)
    assert (report.passed, report.failed, report.skipped) == (1, 1, 1)
    assert report.failing == [
        ("example.com/m/calc.TestSub", "calc"),
        ("example.com/m/broken (build failed)", "broken"),
    ]


def test_runner_detection(tmp_path: Path) -> None:
    def detect(files: dict[str, str]) -> str | None:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return detect_runner(root, list(files))

    assert detect({"pyproject.toml": "[tool.pytest.ini_options]\n"}) == "pytest"
    assert detect({"setup.cfg": "[tool:pytest]\n"}) == "pytest"
    assert detect({"pkg/foo_test.py": ""}) == "pytest"
    assert detect({"vendor/test_x.py": "", "go.mod": "module m\n"}) == "go"
    default = '{"scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'
    assert detect({"package.json": default, "Cargo.toml": ""}) == "cargo"
    assert detect({"package.json": '{"scripts": {"test": "jest"}}'}) == "npm"
    assert detect({"pyproject.toml": "[tool.ruff]\n", "README.md": ""}) is None
