"""`make demo`: build a small repository in a temporary folder, run `orchestree full`
on it with the built-in probes and planner, and say what happened.

The lanes run `examples/demo/agent.py`, a scripted stand-in for an LLM agent (not an
AI). The run shows parallel lanes, a dependent lane, a lane that fails once and is
retried, and two lanes that edit the same lines: the second one's conflict goes back
to its agent (`[merge] on_conflict = "rework"`), which resolves it, and it merges in
the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

FILES = {
    "README.md": "# calc\n\nA tiny calculator library (the orchestree demo).\n",
    "calc/__init__.py": "",
    "calc/ops.py": (
        "def add(a, b):\n    return a + b\n\n\n"
        "def divide(a, b):\n"
        "    # TODO: raise a clear error when b is zero\n"
        "    return a / b\n"
    ),
    "calc/stats.py": (
        "def mean(values):\n"
        "    # FIXME: an empty list crashes with ZeroDivisionError\n"
        "    return sum(values) / len(values)\n"
    ),
    "tests/test_ops.py": (
        "import pytest\n\nfrom calc.ops import add, divide\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_divide_by_zero_says_so():\n"
        '    with pytest.raises(ValueError, match="cannot divide by zero"):\n'
        "        divide(1, 0)\n"
    ),
    "conftest.py": "",
}

CONFIG = """\
[defaults]
agent = "demo"
max_parallel = 2
max_attempts = 2
timeout_s = 120
kill_grace_s = 1
builtin_probes = false  # only the three probes below

[agents.demo]
command = [{python}, {agent}]
env = {{ DEMO_FAIL_FIRST = "FIXME", DEMO_THINK_S = "1" }}

[probes.markers]
builtin = "markers"

[probes.tests]
builtin = "tests"
command = "{python_bare} -m pytest -q"

[merge]
on_conflict = "rework"  # a conflicting lane goes back to its agent, then merges
max_rework = 2

[probes.review]
agent = "demo"
prompt = "Find public functions without a docstring; report one gap per function."
"""

GIT_ID = {
    "GIT_AUTHOR_NAME": "orchestree demo",
    "GIT_AUTHOR_EMAIL": "demo@orchestree.invalid",
    "GIT_COMMITTER_NAME": "orchestree demo",
    "GIT_COMMITTER_EMAIL": "demo@orchestree.invalid",
}


def build(root: Path) -> None:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "orchestree.toml").write_text(
        CONFIG.format(
            python=json.dumps(sys.executable),
            python_bare=sys.executable,
            agent=json.dumps(str(HERE / "agent.py")),
        )
    )
    env = {**os.environ, **GIT_ID}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "calc: a tiny library with gaps"]):  # fmt: skip
        subprocess.run(cmd, cwd=root, env=env, check=True)


def story(tracker: dict) -> list[str]:
    """What the run showed, in plain words, from the tracker."""
    lanes = tracker["lanes"]
    lines = []
    for lane_id, lane in lanes.items():
        if lane["kind"] == "probe":
            continue
        reworks = lane["rework"]["count"] if lane.get("rework") else 0
        if lane["attempts"] - reworks > 1 and lane["status"] in ("merged", "completed"):
            lines.append(f"- {lane_id} failed on its first attempt and succeeded on retry")
        if lane["depends_on"]:
            after = ", ".join(lane["depends_on"])
            lines.append(f"- {lane_id} waited for {after} (they touch the same file)")
        if lane.get("rework") and lane["status"] == "merged":
            files = ", ".join(lane["rework"]["files"])
            lines.append(
                f"- {lane_id} conflicted at merge in {files}: another lane changed the same "
                f"lines first; orchestree merged main into lane-{lane_id}, gave the conflict "
                "back to its agent, which resolved it, and merged it in the same run"
            )
        if lane["status"] == "conflict":
            files = ", ".join(lane["merge"]["conflicts"])
            lines.append(
                f"- {lane_id} conflicted at merge in {files}: another lane changed the same "
                f"lines first; its branch lane-{lane_id} is kept for you to resolve"
            )
    merged = [k for k, v in lanes.items() if v["status"] == "merged" and v["kind"] == "lane"]
    lines.append(f"- merged into main: {', '.join(merged) or 'nothing'}")
    return lines


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="orchestree-demo-")) / "calc"
    build(root)
    print(f"demo repository: {root}\n")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **GIT_ID, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [sys.executable, "-m", "orchestree", "full", "--repo", str(root)], env=env, check=False
    )
    tracker = json.loads((root / ".orchestration" / "tracker.json").read_text())
    print("\nwhat this run showed:")
    for line in story(tracker):
        print(line)
    lanes = [v for v in tracker["lanes"].values() if v["kind"] == "lane"]
    shown = (
        any(v["status"] == "merged" for v in lanes)
        and any(v.get("rework") and v["status"] == "merged" for v in lanes)
        and any(v["attempts"] > 1 for v in lanes)
        and any(v["depends_on"] for v in lanes)
    )
    cli = Path(sys.executable).parent / "orchestree"
    print(f"\nexplore it:\n  cd {root}\n  {cli} status\n  {cli} monitor --web")
    if run.returncode != 0 or not shown:
        print(f"\nthe demo did not go as planned (orchestree exited {run.returncode})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
