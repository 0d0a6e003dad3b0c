"""What `status` prints: a readable table of the tracker."""

from __future__ import annotations

from orchestree.layout import Layout
from orchestree.models import Tracker

PHASES = ("initialised", "probes", "plan", "execute", "merge")
MARKS = {"completed": "✓", "failed": "✗", "running": "→", "created": "○"}


def render_status(tracker: Tracker, layout: Layout) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    phase = PHASES[tracker.phase] if tracker.phase < len(PHASES) else str(tracker.phase)
    console.print(
        f"[bold]{layout.root}[/bold]  phase {tracker.phase} ({phase}), {tracker.status}; "
        f"base {tracker.base_branch} @ {tracker.base_commit[:10]}"
    )
    if not tracker.lanes:
        console.print("no lanes yet: add one with `orchestree add-lane <id> '<json>'`")
        return
    table = Table(show_lines=False, expand=False)
    for column in ("lane", "status", "priority", "agent", "tries", "depends on", "progress"):
        table.add_column(column, overflow="fold")
    ordered = sorted(tracker.lanes.items(), key=lambda item: item[1].order)
    for lane_id, lane in ordered:
        note = lane.error or ("" if lane.progress is None else str(lane.progress))
        if lane.merge.conflicts:
            note = f"conflicts: {', '.join(lane.merge.conflicts)}"
        tries = f"{lane.attempts}/{lane.max_attempts}" if lane.max_attempts else str(lane.attempts)
        table.add_row(
            lane_id,
            lane.status,
            lane.priority,
            lane.agent or "(default)",
            tries,
            ", ".join(lane.depends_on),
            note,
            style=None,
        )
    console.print(table)
    if tracker.agents:
        agents = ", ".join(
            f"{MARKS.get(a.status, '?')} {name}" for name, a in sorted(tracker.agents.items())
        )
        console.print(f"agents: {agents}")
    costs = [lane.cost_usd for lane in tracker.lanes.values() if lane.cost_usd is not None]
    if costs:
        console.print(f"cost: ${sum(costs):.4f} over {len(costs)} lane(s)")
