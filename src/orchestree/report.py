"""What `status` prints: a readable table of the tracker."""

from __future__ import annotations

from collections.abc import Callable

from orchestree.layout import Layout
from orchestree.models import Tracker

PHASES = ("initialised", "probes", "plan", "execute", "merge")
FINISHED = frozenset(
    {"completed", "merged", "failed", "blocked", "cancelled", "conflict", "verify_failed"}
)
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


class LiveProgress:
    """On a TTY: state changes scroll above a line showing lanes done/total and which
    run. Without one, `plain` prints one line per state change."""

    def __init__(self, read: Callable[[], Tracker], kind: str = "lane") -> None:
        from rich.console import Console
        from rich.live import Live

        self.read = read
        self.kind = kind
        self.console = Console(highlight=False)
        self.live = Live(
            get_renderable=self._line, console=self.console, refresh_per_second=4, transient=True
        )

    def _line(self) -> str:
        try:
            tracker = self.read()
        except Exception:  # a view never fails the run it shows
            return "…"
        lanes = {k: v for k, v in tracker.lanes.items() if v.kind == self.kind}
        done = sum(1 for lane in lanes.values() if lane.status in FINISHED)
        running = [k for k, lane in lanes.items() if lane.status == "running"]
        shown = ", ".join(running[:6]) + (" …" if len(running) > 6 else "")
        return f"[bold]{done}/{len(lanes)} lanes done[/bold] · running: {shown or 'none'}"

    def __call__(self, message: str) -> None:
        self.console.print(message, markup=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)
