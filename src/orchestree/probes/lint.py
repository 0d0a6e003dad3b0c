"""The `lint` probe: a linter's findings per file, one gap per file.

`[probes.<id>] command` when set (its output read as ruff's JSON or as the common
`path:line[:col]: message` lines of flake8, mypy, eslint's unix format and others);
else `ruff check --output-format json` when ruff is on PATH; else no linter.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from orchestree.models import Gap, ProbeResult, lane_id_from
from orchestree.probes.common import (
    CommandResult,
    ProbeError,
    ProbeOptions,
    find_tool,
    is_generated_name,
    is_vendored,
    log_run,
    run_command,
)

_LINE = re.compile(r"^(?P<path>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)?\s*(?P<msg>.+)$")
_CODE = re.compile(r"^(?:(?:error|warning|note):\s*)?(?P<code>[A-Z]+\d+)\b")
MAX_TASKS = 50
RUFF_ERROR = 2  # ruff's exit code for "could not lint" (1 means findings)


def probe_lint(root: Path, options: ProbeOptions) -> ProbeResult:
    env = {**options.env, **({"PATH": options.path} if options.path is not None else {})}
    if options.command:
        argv = ["/bin/sh", "-c", options.command]
        linter, shown = "command", options.command
    else:
        ruff = find_tool("ruff", options.path)
        if ruff is None:
            return ProbeResult(
                probe=options.probe_id,
                summary="No linter found: ruff is not on PATH. Install it, or set "
                f"[probes.{options.probe_id}] command to run your linter.",
                metrics={"linter": None},
            )
        argv = [ruff, "check", "--output-format", "json", "--no-cache", "."]
        linter, shown = "ruff", "ruff check --output-format json --no-cache ."
    result = run_command(argv, cwd=root, timeout_s=options.timeout_s, env=env)
    log_run(result, shown, 5)  # timings go to the log: the committed result stays stable
    if result.timed_out:
        raise ProbeError(f"`{shown}` did not finish within {options.timeout_s:g} s")
    findings = parse_findings(result.output, root)
    _check_ran(linter, shown, result, findings)
    findings = [f for f in findings if not (is_vendored(f["path"]) or is_generated_name(f["path"]))]
    return _result(options, linter, shown, result, findings)


def _check_ran(linter: str, shown: str, result: CommandResult, findings: list[Any]) -> None:
    """A linter that failed without saying what it found did not lint: the probe failed."""
    broken = result.exit_code == RUFF_ERROR if linter == "ruff" else result.exit_code != 0
    if broken and not findings:
        last = result.tail(1) or "no output"
        raise ProbeError(f"`{shown}` exited {result.exit_code} without findings: {last}")


def parse_findings(output: str, root: Path) -> list[dict[str, Any]]:
    """Findings as {path, line, column, code, message}, from ruff's JSON or text lines."""
    start = 0 if output.startswith("[") else output.find("\n[") + 1  # after any warnings
    if start or output.startswith("["):
        try:
            raw = json.loads(output[start : output.rindex("]") + 1])
        except ValueError:
            raw = None
        if isinstance(raw, list) and all(isinstance(item, dict) for item in raw):
            return [_from_ruff(item, root) for item in raw]
    findings = []
    for line in output.splitlines():
        if (match := _LINE.match(line.strip())) and (root / match["path"]).is_file():
            message = match["msg"].strip()
            code = _CODE.match(message)
            findings.append(
                {
                    "path": _relative(match["path"], root),
                    "line": int(match["line"]),
                    "column": int(match["col"]) if match["col"] else None,
                    "code": code["code"] if code else None,
                    "message": message,
                }
            )
    return findings


def _from_ruff(item: dict[str, Any], root: Path) -> dict[str, Any]:
    location = item.get("location") or {}
    return {
        "path": _relative(str(item.get("filename", "")), root),
        "line": location.get("row"),
        "column": location.get("column"),
        "code": item.get("code"),
        "message": str(item.get("message", "")),
    }


def _relative(path: str, root: Path) -> str:
    full = path if os.path.isabs(path) else os.path.join(root, path)
    relative = os.path.relpath(os.path.realpath(full), os.path.realpath(root))
    return path if relative.startswith("..") else Path(relative).as_posix()


def _result(
    options: ProbeOptions,
    linter: str,
    shown: str,
    result: CommandResult,
    findings: list[dict[str, Any]],
) -> ProbeResult:
    by_file: dict[str, list[dict[str, Any]]] = {}
    for finding in sorted(findings, key=lambda f: (f["path"], f["line"] or 0, f["column"] or 0)):
        by_file.setdefault(finding["path"], []).append(finding)
    codes = Counter(str(f["code"]) for f in findings if f["code"])
    gaps = [_gap(options.probe_id, path, found, shown) for path, found in by_file.items()]
    summary = (
        f"`{shown}`: {len(findings)} findings in {len(by_file)} files."
        if findings
        else f"`{shown}`: no findings."
    )
    metrics: dict[str, Any] = {
        "linter": linter,
        "command": shown,
        "exit_code": result.exit_code,
        "findings": len(findings),
        "files": {path: len(found) for path, found in by_file.items()},
        "by_code": dict(codes.most_common()),
    }
    return ProbeResult(probe=options.probe_id, summary=summary, metrics=metrics, gaps=gaps)


def _gap(probe_id: str, path: str, found: list[dict[str, Any]], shown: str) -> Gap:
    tasks = [
        f"{path}:{f['line']}:{f['column'] or 1}: {f['code'] + ' ' if f['code'] else ''}"
        f"{f['message']}"
        for f in found[:MAX_TASKS]
    ]
    if len(found) > MAX_TASKS:
        tasks.append(f"… and {len(found) - MAX_TASKS} more findings in {path}")
    tasks.append(f"Fix these findings without changing behaviour; check with `{shown}`.")
    return Gap(
        id=lane_id_from(f"{probe_id}-{path}"),
        title=f"Fix {len(found)} lint finding{'s' if len(found) > 1 else ''} in {path}",
        tasks=tasks,
        priority="medium",
        paths=[path],
    )
