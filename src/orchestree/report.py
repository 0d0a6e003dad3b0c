"""What `status` prints: a readable table of the tracker."""

from __future__ import annotations

from collections.abc import Callable

from orchestree.layout import Layout
from orchestree.models import Tracker

PHASES = ("initialised", "probes", "plan", "execute", "merge")
FINISHED = frozenset(
    {"completed", "merged", "failed", "blocked", "cancelled", "conflict", "verify_failed"}
)
# How the error of a lane held by its agent's authentication failure starts (execution.py).
HELD = "held: "
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
    remote = any(lane.host for lane in tracker.lanes.values())  # lanes ran on Dask workers
    with_cost = any(lane.cost_usd is not None for lane in tracker.lanes.values())
    columns = ["lane", "status", "priority", "agent", "tries", "depends on", "progress"]
    columns = columns[:5] + (["host"] if remote else []) + columns[5:]
    for column in columns + (["cost"] if with_cost else []):
        # Only the free text folds: ids, statuses and amounts stay whole on narrow screens.
        table.add_column(
            column,
            overflow="fold",
            no_wrap=column not in ("host", "depends on", "progress"),
            justify="right" if column == "cost" else "left",
        )
    ordered = sorted(tracker.lanes.items(), key=lambda item: item[1].order)
    for lane_id, lane in ordered:
        note = lane.error or ("" if lane.progress is None else str(lane.progress))
        if lane.merge.conflicts:
            note = f"conflicts: {', '.join(lane.merge.conflicts)}"
        if lane.status == "blocked" and note.startswith(HELD):
            note = "held: its agent is not logged in (see below)"
        tries = f"{lane.attempts}/{lane.max_attempts}" if lane.max_attempts else str(lane.attempts)
        cells = [lane_id, lane.status, lane.priority, lane.agent or "(default)", tries]
        if remote:
            cells.append(lane.host or "")  # the worker's address is in `status --json`
        cells += [", ".join(lane.depends_on), note]
        if with_cost:
            cells.append("-" if lane.cost_usd is None else f"${lane.cost_usd:.4f}")
        table.add_row(*cells, style=None)
    console.print(table)
    # Lanes held for one agent's missing login share one reason: say it once, unwrapped.
    held: dict[str, list[str]] = {}
    for lane_id, lane in ordered:
        if lane.status == "blocked" and lane.error and lane.error.startswith(HELD):
            held.setdefault(lane.error, []).append(lane_id)
    for why, lane_ids in held.items():
        console.print(f"{', '.join(lane_ids)} {why}", markup=False, soft_wrap=True)
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

    def __init__(self, read: Callable[[], Tracker], kind: str | None = "lane") -> None:
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
        lanes = {k: v for k, v in tracker.lanes.items() if self.kind in (None, v.kind)}
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


def summary_lines(tracker: Tracker, layout: Layout) -> list[str]:
    """What a finished run comes to: lanes by status, then every lane that needs a
    person, with why and where to look."""
    counts: dict[str, int] = {}
    for lane in tracker.lanes.values():
        counts[lane.status] = counts.get(lane.status, 0) + 1
    lines = ["summary: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for lane_id, lane in sorted(tracker.lanes.items(), key=lambda item: item[1].order):
        kind = "probe " if lane.kind == "probe" else ""
        retried = f" after {lane.attempts} attempts" if lane.attempts > 1 else ""
        if lane.status == "merged":
            lines.append(f"  ✓ {kind}{lane_id}: merged{retried}")
        elif lane.status == "conflict":
            files = ", ".join(lane.merge.conflicts)
            lines.append(f"  ✗ {kind}{lane_id}: conflict in {files} (its branch is kept)")
        elif lane.status in ("failed", "verify_failed"):
            log = layout.rel(layout.log(lane_id))
            lines.append(f"  ✗ {kind}{lane_id}: {lane.status}: {lane.error} (log: {log})")
        elif lane.status in ("blocked", "cancelled"):
            lines.append(f"  ✗ {kind}{lane_id}: {lane.status}: {lane.error}")
        elif lane.merge.status == "skipped":
            lines.append(f"  - {kind}{lane_id}: not merged: {lane.error}")
        else:
            lines.append(f"  · {kind}{lane_id}: {lane.status}{retried}")
    return lines


def render_summary(tracker: Tracker, layout: Layout) -> None:
    for line in summary_lines(tracker, layout):
        print(line)
