"""The `tests` probe: run the project's test suite and report what fails.

`[probes.<id>] command` when set; else the runner is detected: pytest (the user's,
from PATH), `npm test`, `go test ./...`, `cargo test`. One gap per failing test file.
The suite runs in the probe's worktree, so pytest is told to leave no cache or
bytecode behind (the runner commits whatever a lane leaves).
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestree import git
from orchestree.models import Gap, ProbeResult, lane_id_from
from orchestree.probes.common import (
    CommandResult,
    ProbeError,
    ProbeOptions,
    find_tool,
    is_vendored,
    run_command,
)
from orchestree.probes.testparse import (
    SuiteReport,
    go_module_path,
    parse_cargo,
    parse_go_json,
    parse_js,
    parse_junit,
)

NPM_DEFAULT_TEST = 'echo "Error: no test specified" && exit 1'
PYTEST_NO_TESTS = 5
PYTEST_BROKEN = (3, 4)  # internal error, usage error
SHELL_CHARS = set(";&|<>`$(){}*?~\n")
TAIL_LINES = 20


@dataclass
class _Run:
    runner: str
    shown: str  # the command as the user would type it (no report options, no paths)
    result: CommandResult
    report: SuiteReport


DETECTED_COMMANDS = {
    "pytest": "pytest -q",
    "npm": "npm test",
    "go": "go test ./...",
    "cargo": "cargo test --no-fail-fast",
}


def detect_runner(root: Path, files: list[str]) -> str | None:
    """`pytest`, `npm`, `go`, `cargo`, or None: the first that the repository uses."""
    names = {f.rpartition("/")[2] for f in files if not is_vendored(f)}
    if names & {"conftest.py", "pytest.ini"} or _pytest_configured(root):
        return "pytest"
    if any(n.endswith(".py") and (n.startswith("test_") or n.endswith("_test.py")) for n in names):
        return "pytest"
    if "package.json" in files and _npm_test_script(root / "package.json"):
        return "npm"
    if "go.mod" in files:
        return "go"
    if "Cargo.toml" in files:
        return "cargo"
    return None


def _pytest_configured(root: Path) -> bool:
    try:
        pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        if "ini_options" in pyproject.get("tool", {}).get("pytest", {}):
            return True
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError):
        pass
    for name, section in (("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        try:
            if section in (root / name).read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            continue
    return False


def _npm_test_script(package_json: Path) -> bool:
    try:
        script = json.loads(package_json.read_text(encoding="utf-8"))["scripts"]["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(script, str) and script.strip() not in ("", NPM_DEFAULT_TEST)


def probe_tests(root: Path, options: ProbeOptions) -> ProbeResult:
    with tempfile.TemporaryDirectory(prefix="orchestree-tests-") as tmp:
        junit = Path(tmp) / "junit.xml"
        if options.command:
            run = _run_configured(root, options, junit)
        else:
            runner = detect_runner(root, git.ls_files(root))
            if runner is None:
                return ProbeResult(
                    probe=options.probe_id,
                    summary="No test suite found (no pytest configuration or test_*.py files, "
                    "no package.json test script, no go.mod, no Cargo.toml). Set "
                    f"[probes.{options.probe_id}] command to run one.",
                    metrics={"runner": None},
                )
            run = _run_detected(runner, root, options, junit)
    return _result(options, run)


def _env(options: ProbeOptions, scratch: Path) -> dict[str, str]:
    """Keep build output out of the worktree: the runner commits what a probe leaves."""
    env = {"PYTHONDONTWRITEBYTECODE": "1", **options.env}
    if "CARGO_TARGET_DIR" not in os.environ:
        env["CARGO_TARGET_DIR"] = str(scratch / "cargo-target")
    if options.path is not None:
        env["PATH"] = options.path
    return env


def _pytest_args(junit: Path) -> list[str]:
    return [
        *("-p", "no:cacheprovider", "--continue-on-collection-errors"),
        *(f"--junitxml={junit}", "-o", "junit_family=xunit1"),
    ]


def _run_detected(runner: str, root: Path, options: ProbeOptions, junit: Path) -> _Run:
    program = {"pytest": "pytest", "npm": "npm", "go": "go", "cargo": "cargo"}[runner]
    tool = find_tool(program, options.path)
    if tool is None:
        raise ProbeError(
            f"the repository's tests use {runner} but no `{program}` is on PATH; install it "
            f"or set [probes.{options.probe_id}] command"
        )
    argv = {
        "pytest": [tool, "-q", *_pytest_args(junit)],
        "npm": [tool, "test"],
        "go": [tool, "test", "-json", "./..."],
        "cargo": [tool, "test", "--no-fail-fast"],
    }[runner]
    env = _env(options, junit.parent)
    result = run_command(argv, cwd=root, timeout_s=options.timeout_s, env=env)
    return _Run(runner, DETECTED_COMMANDS[runner], result, _report(runner, result, root, junit))


def _run_configured(root: Path, options: ProbeOptions, junit: Path) -> _Run:
    command = options.command or ""
    words = shlex.split(command) if not SHELL_CHARS & set(command) else []
    if _runs_pytest(words):  # a plain pytest call: ask it for the junit report too
        argv, runner = [*words, *_pytest_args(junit)], "pytest"
    else:
        argv, runner = ["/bin/sh", "-c", command], "command"
    env = _env(options, junit.parent)
    result = run_command(argv, cwd=root, timeout_s=options.timeout_s, env=env)
    if runner == "pytest" and not junit.exists():
        runner = "command"
    return _Run(runner, command, result, _report(runner, result, root, junit))


def _runs_pytest(words: list[str]) -> bool:
    if not words:
        return False
    first = PurePosixPath(words[0]).name
    return first == "pytest" or (first.startswith("python") and words[1:3] == ["-m", "pytest"])


def _report(runner: str, result: CommandResult, root: Path, junit: Path) -> SuiteReport:
    if result.timed_out:
        return SuiteReport()
    if runner == "pytest":
        reported = junit.exists() or result.exit_code == PYTEST_NO_TESTS
        if result.exit_code in PYTEST_BROKEN or not reported:
            raise ProbeError(f"pytest exited {result.exit_code}: {result.tail(1) or 'no output'}")
        if junit.exists():
            return parse_junit(junit.read_text(encoding="utf-8"), root)
        return SuiteReport(passed=0, failed=0, errors=0, skipped=0)
    if runner == "go":
        mod = (root / "go.mod").read_text(encoding="utf-8", errors="replace")
        return parse_go_json(result.output, go_module_path(mod))
    if runner == "cargo":
        return parse_cargo(result.output)
    if runner == "npm":
        return parse_js(result.output, root)
    return SuiteReport()


def _result(options: ProbeOptions, run: _Run) -> ProbeResult:
    result, report, shown = run.result, run.report, run.shown
    metrics: dict[str, object] = {
        "runner": run.runner,
        "command": shown,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "duration_s": round(result.duration_s, 3),
        "passed": report.passed,
        "failed": report.failed,
        "errors": report.errors,
        "skipped": report.skipped,
        "failing_tests": [name for name, _ in report.failing],
        "output_tail": result.tail(TAIL_LINES),
    }
    no_tests = run.runner == "pytest" and result.exit_code == PYTEST_NO_TESTS
    gaps = [] if no_tests else _gaps(options, run)
    if no_tests:
        summary = f"`{shown}` collected no tests."
    elif result.timed_out:
        summary = f"`{shown}` did not finish within {options.timeout_s:g} s."
    else:
        counts = ", ".join(
            f"{n} {what}"
            for what, n in (
                ("passed", report.passed),
                ("failed", report.failed),
                ("errors", report.errors),
                ("skipped", report.skipped),
            )
            if n
        )
        verdict = "passed" if result.exit_code == 0 else f"failed (exit code {result.exit_code})"
        summary = f"`{shown}` {verdict}" + (f": {counts}." if counts else ".")
    return ProbeResult(probe=options.probe_id, summary=summary, metrics=metrics, gaps=gaps)


def _gaps(options: ProbeOptions, run: _Run) -> list[Gap]:
    result, report, shown = run.result, run.report, run.shown
    if result.timed_out:
        return [
            Gap(
                id=f"{options.probe_id}-timeout",
                title=f"The test suite does not finish within {options.timeout_s:g} s",
                tasks=[f"Find why `{shown}` hangs or is slow, and fix it.", result.tail()],
                priority="high",
            )
        ]
    by_file: dict[str, list[str]] = {}
    for name, file in report.failing:
        by_file.setdefault(file, []).append(name)
    gaps = [
        Gap(
            id=lane_id_from(f"{options.probe_id}-{file}"),
            title=f"Fix {len(names)} failing test{'s' if len(names) > 1 else ''} in {file}",
            tasks=[
                *(f"Make {name} pass" for name in names),
                f"Check with `{shown}`; fix the code under test, or the test if it is wrong.",
            ],
            priority="high",
            paths=[file],
        )
        for file, names in by_file.items()
        if file
    ]
    unplaced = by_file.get("", [])
    if unplaced or (result.exit_code != 0 and not gaps):
        tasks = [f"Make {name} pass" for name in unplaced] or [
            f"`{shown}` exits with code {result.exit_code}: make the test suite pass."
        ]
        tasks.append("The end of its output:\n" + result.tail())
        gaps.append(
            Gap(
                id=f"{options.probe_id}-failing",
                title=f"Make `{shown}` pass",
                tasks=tasks,
                priority="high",
            )
        )
    return gaps
