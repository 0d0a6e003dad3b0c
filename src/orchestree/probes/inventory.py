"""The `inventory` probe: files and lines by language, the largest files, tests vs source.

Gaps: source folders that no test touches (no test file below the folder, and no test
file named after any of its modules), and one low-priority suggestion naming the source
files too large to work on comfortably (a suggestion, not a lane per file). Orchestree's
own results (`docs/_generated/`) are not counted, so they never change what it reports.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from pathlib import Path

from orchestree import git
from orchestree.models import Gap, ProbeResult, lane_id_from
from orchestree.probes.common import (
    GENERATED_PREFIX,
    ProbeOptions,
    excluded_globs,
    has_generated_header,
    is_generated_name,
    is_vendored,
)
from orchestree.probes.languages import (
    BOILERPLATE,
    TESTABLE,
    UNTESTED_DIRS,
    covered,
    folder_of,
    folders_above,
    is_test_file,
    language,
    module_name,
    tested_names,
)

LARGE_FILE_LINES = 1000
LARGEST_SHOWN = 10


def probe_inventory(root: Path, options: ProbeOptions) -> ProbeResult:
    files = git.ls_files(root)
    counts = git.line_counts(root, excluded_globs())
    skipped: list[str] = []
    analysed: list[str] = []
    for path in files:
        if path.startswith(GENERATED_PREFIX):
            continue  # our own output: counting it would change with every run
        (skipped if is_vendored(path) or is_generated_name(path) else analysed).append(path)
    top_dir = str(root)
    sizes = {p: _size(os.path.join(top_dir, p)) for p in analysed}
    analysed = [p for p in analysed if sizes[p] is not None]
    binary = [p for p in analysed if p not in counts and sizes[p]]
    text = [p for p in analysed if p in counts or not sizes[p]]

    by_language: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0, "lines": 0})
    tests, sources = [], []
    for path in text:
        lang = language(path)
        entry = by_language[lang]
        entry["files"] += 1
        entry["lines"] += counts.get(path, 0)
        if is_test_file(path):
            tests.append(path)
        elif lang in TESTABLE:
            sources.append(path)
    largest = sorted(text, key=lambda p: (-counts.get(p, 0), p))[:LARGEST_SHOWN]
    large = [
        p
        for p in sorted(tests + sources)
        if counts.get(p, 0) > LARGE_FILE_LINES and not has_generated_header(root / p)
    ]
    untested = untested_folders(sources, tests)

    pid = options.probe_id
    gaps = [_untested_gap(pid, folder, modules) for folder, modules in untested.items()]
    if large:
        gaps.append(_large_gap(pid, {p: counts[p] for p in large}))
    total_lines = sum(counts.get(p, 0) for p in text)
    ranked = sorted(by_language.items(), key=lambda kv: (-kv[1]["lines"], -kv[1]["files"]))
    top = ", ".join(f"{lang} {v['lines']}" for lang, v in ranked[:4])
    summary = (
        f"{len(text)} text files with {total_lines} lines ({top}); "
        f"{len(sources)} source files, {len(tests)} test files; "
        f"{len(large)} files over {LARGE_FILE_LINES} lines; "
        f"{len(untested)} source folders without tests."
    )
    metrics: dict[str, object] = {
        "files": len(text) + len(binary),
        "text_files": len(text),
        "binary_files": len(binary),
        "lines": total_lines,
        "source_files": len(sources),
        "test_files": len(tests),
        "vendored_or_generated_files": len(skipped),
        "by_language": dict(ranked),
        "largest_files": [
            {"path": p, "lines": counts.get(p, 0), "bytes": sizes[p]} for p in largest
        ],
        "large_files": large,
        "untested_folders": list(untested),
    }
    return ProbeResult(probe=options.probe_id, summary=summary, metrics=metrics, gaps=gaps)


def untested_folders(sources: list[str], tests: list[str]) -> dict[str, list[str]]:
    """Folder → its source files, for each folder with source files that no test touches."""
    with_tests: set[str] = set()
    for test in tests:
        with_tests.update(folders_above(test))
    names = tested_names(tests)
    by_folder: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        by_folder[folder_of(source)].append(source)
    untested: dict[str, list[str]] = {}
    for folder, modules in sorted(by_folder.items()):
        if folder in with_tests or any(part in UNTESTED_DIRS for part in folder.split("/")):
            continue
        behaviour = [m for m in modules if module_name(m) not in BOILERPLATE]
        if behaviour and not any(covered(names, m) for m in behaviour):
            untested[folder] = behaviour
    return untested


def _size(file: str) -> int | None:
    try:
        st = os.lstat(file)
    except OSError:  # listed by git but deleted from the working tree
        return None
    return None if stat.S_ISDIR(st.st_mode) else st.st_size  # a submodule is no file


def _large_gap(probe_id: str, large: dict[str, int]) -> Gap:
    """One low-priority suggestion for every large file: large is not broken."""
    listed = ", ".join(f"{path} ({lines} lines)" for path, lines in large.items())
    return Gap(
        id=lane_id_from(f"{probe_id}-large-files"),
        title=f"Suggestion: consider splitting {len(large)} file"
        f"{'s' if len(large) > 1 else ''} over {LARGE_FILE_LINES} lines",
        tasks=[
            f"Files over {LARGE_FILE_LINES} lines: {listed}. Where one holds several jobs, "
            "split it into smaller modules of one job each; keep its behaviour and public "
            "names. Leave a file whole when splitting would not make it clearer.",
        ],
        priority="low",
        paths=list(large),
    )


def _untested_gap(probe_id: str, folder: str, modules: list[str]) -> Gap:
    where = "the repository root" if folder == "." else f"{folder}/"
    listed = ", ".join(m.rpartition("/")[2] for m in modules[:8])
    if len(modules) > 8:
        listed += f" and {len(modules) - 8} more"
    return Gap(
        id=lane_id_from(f"{probe_id}-untested-{'root' if folder == '.' else folder}"),
        title=f"Add tests for {where} ({len(modules)} source files, no tests)",
        tasks=[
            f"No test covers the source files in {where}: {listed}. Write tests for "
            "their behaviour, in the project's test layout and with its test runner.",
        ],
        priority="medium",
        paths=modules,
    )
