"""Reading test runners' reports: pytest's junit XML, `go test -json`, cargo and npm output.

Each parser returns a `SuiteReport`; `failing` pairs a test's name with the file (or
package folder) it lives in, "" when the runner does not say.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SuiteReport:
    passed: int | None = None
    failed: int | None = None
    errors: int | None = None
    skipped: int | None = None
    failing: list[tuple[str, str]] = field(default_factory=list)
    # Why each test failed (first line of its message), when the runner says: parallel
    # to `failing`, so many failures for one reason can be told apart from many bugs.
    reasons: list[str] = field(default_factory=list)


def parse_junit(xml_text: str, root: Path) -> SuiteReport:
    """pytest's junit XML written with `-o junit_family=xunit1` (which records `file`)."""
    tree = ET.fromstring(xml_text)  # written by pytest on this machine, not untrusted input
    report = SuiteReport(passed=0, failed=0, errors=0, skipped=0)
    for case in tree.iter("testcase"):
        outcome = {child.tag for child in case} & {"failure", "error", "skipped"}
        if "skipped" in outcome:
            report.skipped = (report.skipped or 0) + 1
            continue
        if not outcome:
            report.passed = (report.passed or 0) + 1
            continue
        if "failure" in outcome:
            report.failed = (report.failed or 0) + 1
        else:
            report.errors = (report.errors or 0) + 1
        report.failing.append(_junit_name(case, root))
        report.reasons.append(_junit_reason(case))
    return report


def _junit_reason(case: ET.Element) -> str:
    """The first line of a failure's message (e.g. `ModuleNotFoundError: No module …`)."""
    for child in case:
        if child.tag not in ("failure", "error"):
            continue
        # A collection error's message is only "collection failure": its cause is the
        # last `E   ` line of the traceback.
        said = [ln[1:].strip() for ln in (child.text or "").splitlines() if ln.startswith("E ")]
        message = (child.get("message") or "").strip()
        if said and message in ("", "collection failure"):
            return said[-1][:200]
        return message.splitlines()[0][:200] if message else ""
    return ""


def _junit_name(case: ET.Element, root: Path) -> tuple[str, str]:
    name = case.get("name", "")
    classname = case.get("classname", "")
    file = case.get("file", "").replace("\\", "/")
    if not file:  # a collection error names the module with dots: tests.test_x
        guess = (classname or name).replace(".", "/") + ".py"
        file = guess if (root / guess).is_file() else ""
        return (file or name or classname, file)
    module = file.removesuffix(".py").replace("/", ".")
    if name == module and not classname:  # the module itself failed to import
        return file, file
    cls = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    parts = [file, *(cls.split(".") if cls else []), name]
    node = "::".join(part for part in parts if part)
    return node, file


def go_module_path(go_mod: str) -> str:
    match = re.search(r"^module\s+(\S+)", go_mod, re.MULTILINE)
    return match[1].strip('"') if match else ""


def parse_go_json(output: str, module: str) -> SuiteReport:
    """`go test -json ./...`: one event a line; a failing test's place is its package folder."""
    report = SuiteReport(passed=0, failed=0, skipped=0)
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        action, package, test = event.get("Action"), event.get("Package", ""), event.get("Test")
        folder = _go_folder(package, module)
        if test and action == "pass":
            report.passed = (report.passed or 0) + 1
        elif test and action == "skip":
            report.skipped = (report.skipped or 0) + 1
        elif test and action == "fail":
            report.failed = (report.failed or 0) + 1
            report.failing.append((f"{package}.{test}", folder))
        elif (
            not test and action == "fail" and not any(f[1] == folder for f in report.failing)
        ):  # the package failed without a failing test: it did not build
            report.failing.append((f"{package} (build failed)", folder))
    return report


def _go_folder(package: str, module: str) -> str:
    if module and package == module:
        return "."
    if module and package.startswith(module + "/"):
        return package[len(module) + 1 :]
    return ""


_CARGO_RUNNING = re.compile(r"^\s*Running (?:unittests )?(\S+)")
_CARGO_TEST = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
_CARGO_RESULT = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")


def parse_cargo(output: str) -> SuiteReport:
    """`cargo test` text: `Running <file>` says where the next tests live."""
    report = SuiteReport(passed=0, failed=0, skipped=0)
    current = ""
    for line in output.splitlines():
        if running := _CARGO_RUNNING.match(line):
            current = running[1] if "/" in running[1] or running[1].endswith(".rs") else ""
        elif (test := _CARGO_TEST.match(line)) and test[2] == "FAILED":
            report.failing.append((test[1], current))
        elif result := _CARGO_RESULT.search(line):
            report.passed = (report.passed or 0) + int(result[1])
            report.failed = (report.failed or 0) + int(result[2])
            report.skipped = (report.skipped or 0) + int(result[3])
    return report


_TAP_COUNT = re.compile(r"^# (pass|fail|skipped) (\d+)$", re.MULTILINE)
_TAP_NOT_OK = re.compile(r"^\s*not ok \d+ - (.+?)(?:\s+#.*)?$")
_TAP_LOCATION = re.compile(r"^\s+location: '(.+?):\d+:\d+'$")
_JEST = re.compile(r"^Tests:\s+(.*\d+ total)", re.MULTILINE)


def parse_js(output: str, root: Path) -> SuiteReport:
    """`npm test` output from node's test runner (TAP) or jest; counts when recognisable."""
    report = SuiteReport()
    counts = {kind: int(n) for kind, n in _TAP_COUNT.findall(output)}
    if counts:
        report.passed, report.failed = counts.get("pass", 0), counts.get("fail", 0)
        report.skipped = counts.get("skipped", 0)
        report.failing = _tap_failures(output, root)
    elif jest := _JEST.search(output):
        parts = {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", jest[1])}
        report.passed, report.failed = parts.get("passed", 0), parts.get("failed", 0)
        report.skipped = parts.get("skipped", 0)
    return report


def _tap_failures(output: str, root: Path) -> list[tuple[str, str]]:
    failing: list[tuple[str, str]] = []
    pending: str | None = None
    for line in output.splitlines():
        if not_ok := _TAP_NOT_OK.match(line):
            if pending is not None:
                failing.append((pending, ""))
            pending = not_ok[1]
        elif pending is not None and (location := _TAP_LOCATION.match(line)):
            failing.append((pending, _relative(location[1], root)))
            pending = None
    if pending is not None:
        failing.append((pending, ""))
    return failing


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return ""
