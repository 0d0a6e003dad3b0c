#!/usr/bin/env python3
"""A scripted stand-in for an LLM coding agent, used by `make demo`.

This is NOT an AI. It reads its prompt, recognises the demo repository's gaps, and
makes the edit each calls for, as a real agent would. It is also the reference for
writing an agent of your own; everything orchestree offers an agent is used here:

- It runs in the lane's worktree (the current folder) on the lane's branch, with
  stdin from /dev/null. Its stdout and stderr go to the lane's log.
- Its environment names everything: ORCHESTREE_LANE, ORCHESTREE_TRACKER (absolute),
  ORCHESTREE_PROMPT_FILE, ORCHESTREE_RESULTS_DIR (docs/_generated/<lane>),
  ORCHESTREE_WORKTREE, ORCHESTREE_BRANCH, ORCHESTREE_ATTEMPT, ORCHESTREE_PORT.
- It reports progress through the stdlib helper at the worktree root:
  python3 access_tracker.py "$ORCHESTREE_TRACKER" '{"lanes": {"<lane>": {"progress": "..."}}}'
- It commits its work. (Whatever it leaves uncommitted, orchestree commits for it.)
- Exit 0 means done; anything else fails the attempt (retried while attempts remain).
- On a rework (ORCHESTREE_REWORK set: `conflict`, `verify` or `review`) it reads the
  details from ORCHESTREE_REWORK_FILE (JSON: reason, files, the other lanes and their
  tasks, the verify output's tail, review comments). For a conflict, orchestree has
  merged the base branch into the worktree and left the markers: it resolves them and
  commits the merge.

Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# What the demo's gaps call for: (a phrase of the task, file, old text, new text);
# the first recipe that matches a file wins.
# The two recipes for calc/ops.py change the same lines in different ways: both
# lanes succeed on their own, and `merge` reports the conflict between them.
RECIPES = [
    (
        "tests/test_ops.py",
        "calc/ops.py",
        "    # TODO: raise a clear error when b is zero\n    return a / b\n",
        '    if b == 0:\n        raise ValueError("cannot divide by zero")\n    return a / b\n',
    ),
    (
        "calc/ops.py",
        "calc/ops.py",
        "    # TODO: raise a clear error when b is zero\n    return a / b\n",
        '    if b == 0:\n        raise ValueError("division by zero")\n    return a / b\n',
    ),
    (
        "calc/stats.py",
        "calc/stats.py",
        "    # FIXME: an empty list crashes with ZeroDivisionError\n"
        "    return sum(values) / len(values)\n",
        "    if not values:\n        return 0.0\n    return sum(values) / len(values)\n",
    ),
    (
        "docs-stats",
        "calc/stats.py",
        "def mean(values):\n",
        'def mean(values):\n    """The arithmetic mean of `values`; 0.0 for no values."""\n',
    ),
]


def progress(lane: str, text: str) -> None:
    """Report progress the way any agent can: the helper at the worktree root."""
    helper = "access_tracker.py" if Path("access_tracker.py").exists() else None
    tracker = os.environ["ORCHESTREE_TRACKER"]
    if helper is None:  # the repository tracks its own access_tracker.py
        helper = str(Path(tracker).parent / "access_tracker.py")
    update = {"lanes": {lane: {"progress": text}}}
    subprocess.run([sys.executable, helper, tracker, json.dumps(update)], check=True)


def write_probe(lane: str, prompt: str) -> int:
    """As an agent probe: report one gap, in the JSON the prompt asks for."""
    out = Path(os.environ["ORCHESTREE_RESULTS_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    gap = {
        "id": "docs-stats",
        "title": "calc.stats.mean has no docstring",
        "tasks": ["Document calc/stats.py mean() (docs-stats)"],
        "priority": "low",
        "paths": ["calc/stats.py"],
    }
    result = {
        "probe": lane,
        "summary": "1 function without a docstring",
        "metrics": {"functions": 3},
        "gaps": [gap],
    }
    (out / "state_probe.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "state_probe.md").write_text("# review\n\n- calc/stats.py: mean() has no docstring\n")
    return 0


def resolve(text: str) -> str:
    """Resolve conflict blocks the way this demo's tasks call for: where both lanes
    changed the same lines, the side already merged (the base's) does what this lane
    was asked to do too (raise a clear error for b == 0), so keep it."""
    out: list[str] = []
    side = None  # None outside a block; "ours", "base" (diff3) or "theirs" inside
    for line in text.splitlines(keepends=True):
        if line.startswith("<<<<<<<"):
            side = "ours"
        elif line.startswith("|||||||") and side == "ours":
            side = "base"
        elif line.startswith("=======") and side in ("ours", "base"):
            side = "theirs"
        elif line.startswith(">>>>>>>") and side == "theirs":
            side = None
        elif side in (None, "theirs"):
            out.append(line)
    return "".join(out)


def rework(lane: str) -> int:
    """A rework: orchestree sent this lane back, saying why and with what."""
    details = json.loads(Path(os.environ["ORCHESTREE_REWORK_FILE"]).read_text())
    reason = os.environ["ORCHESTREE_REWORK"]
    met = ", ".join(str(other["lane"]) for other in details["others"]) or "the base"
    print(f"demo agent: rework of lane {lane} ({reason}): {details['files']} meet {met}")
    if reason != "conflict":
        print("demo agent: only conflicts are reworked in this demo")
        return 1
    progress(lane, f"resolving the conflict with {met}")
    for name in details["files"]:
        Path(name).write_text(resolve(Path(name).read_text()))
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-q", "--no-edit"], check=True)
    progress(lane, "conflict resolved")
    return 0


def main() -> int:
    lane = os.environ["ORCHESTREE_LANE"]
    if os.environ.get("ORCHESTREE_REWORK"):
        return rework(lane)
    prompt = Path(os.environ["ORCHESTREE_PROMPT_FILE"]).read_text()
    attempt = int(os.environ.get("ORCHESTREE_ATTEMPT", "1"))
    if "state_probe.json" in prompt and "gaps" in prompt:
        return write_probe(lane, prompt)
    print(f"demo agent: lane {lane}, attempt {attempt}")
    progress(lane, "reading the task")
    flaky = os.environ.get("DEMO_FAIL_FIRST", "")
    if flaky and flaky in prompt and attempt == 1:
        print("demo agent: simulated failure (the model timed out); orchestree will retry")
        return 1
    time.sleep(float(os.environ.get("DEMO_THINK_S", "1")))
    edited = []
    for phrase, path, old, new in RECIPES:
        if phrase not in prompt or path in edited:
            continue
        text = Path(path).read_text()
        if old in text:
            Path(path).write_text(text.replace(old, new, 1))
            edited.append(path)
    if not edited:
        print("demo agent: nothing in this task I know how to do")
        return 0
    progress(lane, f"edited {', '.join(edited)}; committing")
    subprocess.run(["git", "add", *edited], check=True)
    message = re.sub(r"\s+", " ", prompt.split("\n", 1)[0])[:60]
    subprocess.run(["git", "commit", "-q", "-m", f"demo agent: {message}"], check=True)
    progress(lane, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
