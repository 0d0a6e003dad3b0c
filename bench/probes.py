"""Time the built-in probes on a synthetic repository of 20 000 files (not a test).

    .venv/bin/python bench/probes.py [--files 20000] [--repeat 7] [--keep DIR]

Baseline: `git ls-files -z | xargs -0 cat > /dev/null`, the cost of reading the tree
once. Times are the best of N warm runs. Each probe runs as the runner launches it
(`python -m orchestree.probes …`: interpreter start and imports included) and, for
comparison, in-process. The `tests` probe gets a trivial command (`true`); `lint`
uses ruff when it is on PATH.
Prints a markdown table; the markers probe should stay within 3x the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _rows import emit

from orchestree.probes import ProbeOptions, run_builtin

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
TOOLS_PATH = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])


def py_file(i: int) -> str:
    body = [f'"""Module {i}."""', "", "import math", "", ""]
    if i % 50 == 1:
        body.insert(3, "import os")  # a lint finding (F401) in 2% of the files
    for f in range(6):
        body += [f"def f{f}(x):", f"    y = math.sqrt(x) + {f}", "    return y * 2", "", ""]
    if i % 20 == 0:
        body.insert(4, f"# TODO: handle the negative case of module {i}")
    return "\n".join(body).rstrip() + "\n"


def js_file(i: int) -> str:
    lines = [f"export function g{i}(a) {{", "  const b = a + 1;", "  return b * 2;", "}"] * 5
    if i % 25 == 0:
        lines.insert(1, "  // FIXME: overflow")
    return "\n".join(lines) + "\n"


def make_repo(root: Path, n_files: int) -> None:
    root.mkdir(parents=True)
    per_dir = 100
    for i in range(n_files):
        folder = root / ("tests" if i % 10 == 0 else "src") / f"pkg{i // per_dir:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = i % 10
        if kind == 0:
            (folder / f"test_m{i}.py").write_text(f"def test_{i}():\n    assert True\n")
        elif kind < 7:
            (folder / f"m{i}.py").write_text(py_file(i))
        elif kind < 9:
            (folder / f"c{i}.js").write_text(js_file(i))
        else:
            (folder / f"notes{i}.md").write_text(f"# Notes {i}\n\nNothing to do here.\n" * 3)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


def timed(action: Callable[[], object], repeat: int) -> float:
    action()  # warm the page cache and git's index
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return min(samples)  # best of N: other processes on the machine only ever add time


def run(argv: list[str], cwd: Path) -> None:
    env = {**os.environ, "PATH": TOOLS_PATH}
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the repository here and keep it")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="orchestree-bench-"))
    repo = base / "repo"
    try:
        if not repo.exists():
            start = time.perf_counter()
            make_repo(repo, args.files)
            print(f"built {args.files} files in {time.perf_counter() - start:.1f} s: {repo}")
        baseline = timed(
            lambda: run(["sh", "-c", "git ls-files -z | xargs -0 cat > /dev/null"], repo),
            args.repeat,
        )
        ruff = shutil.which("ruff", path=TOOLS_PATH)
        probes: dict[str, list[str]] = {
            "inventory": [],
            "markers": [],
            "tests": ["--command", "true"],
        }
        if ruff:
            probes["lint"] = []
        rows = [("baseline: `git ls-files -z \\| xargs -0 cat`", baseline, baseline)]
        for name, extra in probes.items():
            argv = [sys.executable, "-m", "orchestree.probes", name, "--root", "."]
            argv += ["--out", str(base / "out" / name), *extra]
            cli = timed(partial(run, argv, repo), args.repeat)
            options = ProbeOptions(
                probe_id=name, command="true" if name == "tests" else None, path=TOOLS_PATH
            )
            inproc = timed(partial(run_builtin, name, repo, options), args.repeat)
            rows.append((f"`{name}`", cli, inproc))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{args.files} files, best of {args.repeat} warm runs, {os.cpu_count()} CPUs,")
        print(f"load average {load}\n")
        print("| probe | entry point (s) | × baseline | in-process (s) | × baseline |")
        print("|---|---:|---:|---:|---:|")
        for label, cli, inproc in rows:
            print(
                f"| {label} | {cli:.3f} | {cli / baseline:.2f} | {inproc:.3f} | "
                f"{inproc / baseline:.2f} |"
            )
            if "baseline" in label:
                continue
            ratio = cli / baseline
            markers = "markers" in label  # the one probe with a target
            emit("probes.py", f"probe {label} on {args.files} files", f"{cli:.3f} s",
                 f"{baseline:.3f} s (read the tree once)", ratio,
                 "≤ 3.0" if markers else "", ratio <= 3.0 if markers else None)  # fmt: skip
        if not ruff:
            print("\nlint: ruff not on PATH, not timed")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
