"""The `tests` probe: run the project's test suite and report what fails.

`[probes.<id>] command` when set; else the runner is detected: pytest, `npm test`,
`go test ./...`, `cargo test`. pytest is the project's own: its `.venv`/`venv` when it
has one, else the `pytest` on PATH, never orchestree's own; either way the repository's
code comes first on the path (`src/` of a src layout, and the root), so the suite tests
this checkout, not an installed copy. One gap per failing test file; when nearly every
test fails for one reason, one environment gap instead. The suite runs in the probe's
worktree, so pytest is told to leave no cache or bytecode behind (the runner commits
whatever a lane leaves). Timings and output tails go to the probe's log, not into its
committed result, so an unchanged suite commits nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestree import git
from orchestree.errors import GitError
from orchestree.models import Gap, ProbeResult, lane_id_from
from orchestree.probes.common import (
    CommandResult,
    ProbeError,
    ProbeOptions,
    find_tool,
    is_vendored,
    log_run,
    run_command,
    scrub,
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
# "Nearly everything fails the same way": at least this many failures, this share of
# the tests run, and this share of the failures giving one reason.
ENV_GAP_MIN_FAILURES = 5
ENV_GAP_FAILING_SHARE = 0.5
ENV_GAP_SAME_REASON_SHARE = 0.8
PROJECT_VENVS = (".venv", "venv")


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
    return _result(options, run, root)


def project_python(root: Path) -> Path | None:
    """The python of the project's own virtualenv (`.venv` or `venv`), looked for in
    `root` and, for a worktree, in the main checkout (a virtualenv is never in git)."""
    places = [root]
    with contextlib.suppress(OSError, GitError):
        main = git.common_dir(root).parent
        if main.resolve() != root.resolve():
            places.append(main)
    for place in places:
        for name in PROJECT_VENVS:
            python = place / name / "bin" / "python"
            if python.is_file() and os.access(python, os.X_OK):
                return python
    return None


def code_path(root: Path) -> str:
    """PYTHONPATH that puts the repository's own code before any installed copy."""
    first = [str(root / "src")] if (root / "src").is_dir() else []
    return os.pathsep.join([*first, str(root), *filter(None, [os.environ.get("PYTHONPATH")])])


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


def _pytest_argv(root: Path, options: ProbeOptions) -> list[str]:
    """The project's pytest: its virtualenv's, else one on PATH outside orchestree's."""
    python = project_python(root)
    if python is not None:
        return [str(python), "-m", "pytest"]
    tool = find_tool("pytest", options.path, own_env=False)
    if tool is None:
        raise ProbeError(
            "the repository's tests use pytest but it has no .venv/venv and no `pytest` is "
            "on PATH (orchestree's own is not used: it would test orchestree's packages); "
            f"make a .venv with pytest, or set [probes.{options.probe_id}] command"
        )
    return [tool]


def _run_detected(runner: str, root: Path, options: ProbeOptions, junit: Path) -> _Run:
    if runner == "pytest":
        argv = [*_pytest_argv(root, options), "-q", *_pytest_args(junit)]
    else:
        tool = find_tool(runner, options.path)
        if tool is None:
            raise ProbeError(
                f"the repository's tests use {runner} but no `{runner}` is on PATH; install "
                f"it or set [probes.{options.probe_id}] command"
            )
        argv = {
            "npm": [tool, "test"],
            "go": [tool, "test", "-json", "./..."],
            "cargo": [tool, "test", "--no-fail-fast"],
        }[runner]
    env = _env(options, junit.parent)
    if runner == "pytest":
        env["PYTHONPATH"] = code_path(root)
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


def _result(options: ProbeOptions, run: _Run, root: Path) -> ProbeResult:
    result, report, shown = run.result, run.report, run.shown
    log_run(result, shown, TAIL_LINES)
    metrics: dict[str, object] = {
        "runner": run.runner,
        "command": shown,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "passed": report.passed,
        "failed": report.failed,
        "errors": report.errors,
        "skipped": report.skipped,
        "failing_tests": [name for name, _ in report.failing],
    }
    no_tests = run.runner == "pytest" and result.exit_code == PYTEST_NO_TESTS
    environment = None if no_tests else _environment_gap(options, run, root)
    if environment is not None:
        metrics["environment_problem"] = environment.title
    gaps = [] if no_tests else [environment] if environment else _gaps(options, run, root)
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


def _environment_gap(options: ProbeOptions, run: _Run, root: Path) -> Gap | None:
    """One gap when nearly every test fails for one reason: that is the environment
    (a missing dependency, the wrong package imported), not a bug per test file."""
    report = run.report
    failing = len(report.failing)
    total = failing + (report.passed or 0)
    if failing < ENV_GAP_MIN_FAILURES or failing < ENV_GAP_FAILING_SHARE * total:
        return None
    reason, count = Counter(report.reasons).most_common(1)[0] if report.reasons else ("", 0)
    if not reason or count < ENV_GAP_SAME_REASON_SHARE * failing:
        return None
    said = scrub(reason, root)
    return Gap(
        id=f"{options.probe_id}-environment",
        title=f"{count} of {total} tests fail the same way: {said}",
        tasks=[
            f"`{run.shown}`: {count} of {total} tests fail with `{said}`. That is one "
            "problem of the test environment, not a bug per test: check that the tests "
            "import this repository's code (not an installed copy), that the test "
            "dependencies are installed, and that the suite runs as its README says.",
            f"Fix that cause, then check with `{run.shown}`.",
        ],
        priority="high",
    )


def _gaps(options: ProbeOptions, run: _Run, root: Path) -> list[Gap]:
    result, report, shown = run.result, run.report, run.shown
    tail = scrub(result.tail(), root)
    if result.timed_out:
        return [
            Gap(
                id=f"{options.probe_id}-timeout",
                title=f"The test suite does not finish within {options.timeout_s:g} s",
                tasks=[f"Find why `{shown}` hangs or is slow, and fix it.", tail],
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
        tasks.append("The end of its output:\n" + tail)
        gaps.append(
            Gap(
                id=f"{options.probe_id}-failing",
                title=f"Make `{shown}` pass",
                tasks=tasks,
                priority="high",
            )
        )
    return gaps
