"""The text an agent is given: its tasks, where it is, where results go, how to commit
and how to report progress to the tracker (DESIGN.md §5)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from orchestree.agents.base import LaunchContext
from orchestree.layout import results_dir

if TYPE_CHECKING:
    from orchestree.models import Lane

REWORK_TAIL_CHARS = 4000  # of a failing verify's output, for the agent


def build_prompt(ctx: LaunchContext) -> str:
    lane = ctx.lane
    tracker = shlex.quote(str(ctx.tracker.absolute()))
    update = json.dumps({"lanes": {ctx.lane_id: {"progress": "50% complete: parser done"}}})
    title = f"{lane.name} ({ctx.lane_id})" if lane.name else ctx.lane_id
    parts = [f"You are the agent of lane {title} in an orchestree run on this repository."]
    if lane.tasks:
        parts.append("Your tasks:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(lane.tasks, 1)))
    if lane.prompt:
        parts.append(lane.prompt)
    if lane.results:
        parts.append("Expected results: " + ", ".join(lane.results))
    parts.append(
        "Where you work:\n"
        f"- Your worktree is {ctx.worktree} (the current directory); change files only there.\n"
        f"- Your branch is {ctx.branch}; stay on it (no checkout of other branches, no rebase, "
        "no push).\n"
        f"- Put reports and other result files under {results_dir(ctx.lane_id)}/ in the "
        "worktree."
    )
    parts.append(
        "When you are done, commit your work on your branch "
        '(git add -A && git commit -m "<what you did>"). '
        "Anything you leave uncommitted is committed for you when you exit."
    )
    parts.append(
        "Report progress to the orchestrator's tracker as you go, a short text each time:\n"
        f"  {ctx.helper_command} {tracker} '{update}'\n"
        f"Read the whole tracker with: {ctx.helper_command} {tracker}\n"
        f'You may put structured findings under "data" in your lane\'s entry. Change no other '
        "lane and no status: orchestree sets statuses when you exit."
    )
    parts.append(
        'Other lanes run beside you. The tracker\'s "radar" list names lanes whose work '
        f'would conflict with yours (entries whose "lanes" include "{ctx.lane_id}"; '
        '"<base>" is the base branch) and the files: read it now and then with the command '
        "above, and keep out of those files' lines where your task allows."
    )
    return "\n\n".join(parts) + "\n"


def rework_section(repo_root: Path, lane: Lane) -> str:
    """The part of the prompt that says this attempt is a rework, and of what."""
    rework = lane.rework
    if rework is None or rework.reason == "rerun" or rework.file is None:
        return ""
    path = repo_root / rework.file
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    files = ", ".join(data.get("files") or rework.files) or "(none named)"
    base = data.get("base_branch") or "the base branch"
    lines = ["", f"THIS ATTEMPT IS A REWORK ({rework.reason}, rework {rework.count})."]
    if rework.reason == "conflict":
        lines.append(
            f"Your branch conflicted with {base}. orchestree has merged {base} into your "
            f"branch in your worktree and left the conflict markers in: {files}. Resolve "
            "every conflict so that both your work and theirs are kept, remove all markers, "
            "then commit the merge (git add -A && git commit --no-edit). Do not abort "
            "the merge: a result that leaves markers or drops the merge fails."
        )
    elif rework.reason == "verify":
        lines.append(
            f"Merging your branch into {base} failed its verify command. Fix your work so "
            "it passes, then commit. The command's output ends with:\n"
            + str(data.get("verify_tail") or "")[-REWORK_TAIL_CHARS:]
        )
    else:
        lines.append("A reviewer asks for changes:\n" + str(data.get("comments") or ""))
    for other in data.get("others") or []:
        tasks = "; ".join(str(t) for t in other.get("tasks") or [])
        lines.append(f"- lane {other.get('lane')} (merged) touched these files: {tasks}")
    lines.append(f"All details, as JSON: {path} (also in $ORCHESTREE_REWORK_FILE).")
    return "\n".join(lines) + "\n"


def rework_env(repo_root: Path, lane: Lane) -> dict[str, str]:
    """`ORCHESTREE_REWORK` and `ORCHESTREE_REWORK_FILE` for a rework attempt."""
    rework = lane.rework
    if rework is None or rework.reason == "rerun" or rework.file is None:
        return {}
    path = str(repo_root / rework.file)
    return {"ORCHESTREE_REWORK": rework.reason, "ORCHESTREE_REWORK_FILE": path}
