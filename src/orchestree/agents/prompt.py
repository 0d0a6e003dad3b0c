"""The text an agent is given: its tasks, where it is, where results go, how to commit
and how to report progress to the tracker (DESIGN.md §5)."""

from __future__ import annotations

import json
import shlex

from orchestree.agents.base import LaunchContext
from orchestree.layout import results_dir


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
