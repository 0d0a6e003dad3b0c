"""The `markers` probe: TODO, FIXME, XXX and HACK comments, one gap per file.

`git grep` does the reading (in parallel, skipping binary files); Python only parses
the lines it matched. A marker counts when it is the first word of a comment: right
after `#`, `//`, `/*`, `<!--`, `--`, `;`, `%` or a leading `*`. Prose that merely
mentions one is not reported.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from orchestree import git
from orchestree.models import Gap, ProbeResult, lane_id_from
from orchestree.probes.common import (
    ProbeOptions,
    excluded_globs,
    has_generated_header,
    is_generated_name,
    is_vendored,
)

MARKERS = ("TODO", "FIXME", "XXX", "HACK")
URGENT = frozenset({"FIXME", "XXX"})
_LEADER_ERE = r"(#|//|/\*|<!--|--|;|%|^[[:space:]]*\*)[[:space:]]*[*!/#]*[[:space:]]*"
GREP_PATTERN = _LEADER_ERE + "(" + "|".join(MARKERS) + r")([^[:alnum:]_]|$)"
_LINE = re.compile(
    r"(?:#|//|/\*|<!--|--|;|%|^\s*\*)\s*[*!/#]*\s*(" + "|".join(MARKERS) + r")(?![\w])"
)
_LEAD = re.compile(r"^\s*(?:\([^)]*\))?\s*[:\-]?\s*")
_TRAIL = re.compile(r"\s*(?:\*/|-->)\s*$")
MAX_TEXT = 200
MAX_LISTED = 500


def find_markers(root: Path) -> tuple[list[dict[str, object]], int]:
    """Every marker comment as {path, line, marker, text}, and how many generated files
    with markers were skipped."""
    found: list[dict[str, object]] = []
    generated: dict[str, bool] = {}
    for path, number, line in git.grep_lines(root, GREP_PATTERN, excluded_globs()):
        if is_vendored(path) or is_generated_name(path):
            continue
        if path not in generated:
            generated[path] = has_generated_header(root / path)
        if generated[path]:
            continue
        match = _LINE.search(line)
        if match is None:
            continue
        text = _TRAIL.sub("", _LEAD.sub("", line[match.end(1) :])).strip()
        found.append({"path": path, "line": number, "marker": match[1], "text": text[:MAX_TEXT]})
    found.sort(key=lambda m: (str(m["path"]), int(str(m["line"]))))
    return found, sum(generated.values())


def probe_markers(root: Path, options: ProbeOptions) -> ProbeResult:
    items, generated_skipped = find_markers(root)
    by_file: dict[str, list[dict[str, object]]] = {}
    for item in items:
        by_file.setdefault(str(item["path"]), []).append(item)
    gaps = [_gap(options.probe_id, path, found) for path, found in by_file.items()]
    counts = Counter(str(item["marker"]) for item in items)
    kinds = ", ".join(f"{counts[m]} {m}" for m in MARKERS if counts[m])
    summary = (
        f"{len(items)} marker comments ({kinds}) in {_files(len(by_file))}."
        if items
        else "No TODO, FIXME, XXX or HACK comments found."
    )
    metrics: dict[str, object] = {
        "markers": len(items),
        "files": len(by_file),
        "by_marker": {m: counts[m] for m in MARKERS},
        "generated_files_skipped": generated_skipped,
        "items": items[:MAX_LISTED],
    }
    if len(items) > MAX_LISTED:
        metrics["items_truncated"] = True
    return ProbeResult(probe=options.probe_id, summary=summary, metrics=metrics, gaps=gaps)


def _gap(probe_id: str, path: str, found: list[dict[str, object]]) -> Gap:
    counts = Counter(str(item["marker"]) for item in found)
    kinds = ", ".join(f"{counts[m]} {m}" for m in MARKERS if counts[m])
    tasks = [
        f"{path}:{item['line']}: {item['marker']}: {item['text'] or '(no text)'}" for item in found
    ]
    tasks.append(
        f"Resolve each marker in {path}: do what it asks (or record why not) and remove it."
    )
    return Gap(
        id=lane_id_from(f"{probe_id}-{path}"),
        title=f"Resolve {kinds} in {path}",
        tasks=tasks,
        priority="medium" if URGENT & set(counts) else "low",
        paths=[path],
    )


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
