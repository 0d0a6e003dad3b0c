"""A probe's output files: `state_probe.json` (validated) and `state_probe.md`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestree.errors import UserError
from orchestree.models import ProbeResult, describe_validation_error

RESULT_JSON = "state_probe.json"
RESULT_MD = "state_probe.md"


class ProbeOutputError(UserError):
    """A probe's `state_probe.json` is missing, not JSON, or not of the schema."""


def load_probe_output(path: Path) -> ProbeResult:
    """Read and validate one `state_probe.json`; a `ProbeOutputError` names the file and why."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProbeOutputError(f"{path}: missing; the probe wrote no {RESULT_JSON}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeOutputError(f"{path}: unreadable ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ProbeOutputError(f"{path}: not valid JSON ({exc.msg} at {where})") from None
    if not isinstance(raw, dict):
        raise ProbeOutputError(f"{path}: must hold a JSON object, not {type(raw).__name__}")
    try:
        return ProbeResult.model_validate(raw)
    except ValidationError as exc:
        raise ProbeOutputError(describe_validation_error(exc, str(path))) from None


def write_probe_output(out_dir: Path, result: ProbeResult) -> Path:
    """Write `state_probe.json` and `state_probe.md` into `out_dir`; returns the JSON's path.

    Each file is written to a temporary name and renamed, so a reader never sees half.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.model_dump(mode="json", exclude_none=True)
    json_path = out_dir / RESULT_JSON
    _write(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _write(out_dir / RESULT_MD, render_markdown(result))
    return json_path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_markdown(result: ProbeResult) -> str:
    """The human summary: what the probe measured and the gaps it found."""
    lines = [f"# Probe `{result.probe}`", "", result.summary.strip(), ""]
    if result.metrics:
        lines += ["## Metrics", ""]
        for key, value in result.metrics.items():
            lines += _metric_lines(key, value)
        lines.append("")
    lines += [f"## Gaps ({len(result.gaps)})", ""]
    if not result.gaps:
        lines += ["None found.", ""]
        return "\n".join(lines)
    lines += ["| priority | id | title | paths |", "|---|---|---|---|"]
    for gap in result.gaps:
        paths = ", ".join(f"`{p}`" for p in gap.paths[:3])
        if len(gap.paths) > 3:
            paths += f" and {len(gap.paths) - 3} more"
        title = gap.title.replace("|", "\\|")
        lines.append(f"| {gap.priority} | `{gap.id}` | {title} | {paths} |")
    lines.append("")
    for gap in result.gaps:
        lines += [f"### {gap.id}", ""]
        lines += [f"- {task}" for task in gap.tasks] or [f"- {gap.title}"]
        lines.append("")
    return "\n".join(lines)


def _metric_lines(key: str, value: Any, shown: int = 10) -> list[str]:
    if not isinstance(value, dict | list):
        return [f"- **{key}**: {value}"]
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    lines = [f"- **{key}** ({len(items)}):"]
    for name, item in items[:shown]:
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        lines.append(f"  - {text}" if isinstance(value, list) else f"  - {name}: {text}")
    if len(items) > shown:
        lines.append(f"  - … and {len(items) - shown} more")
    return lines
