"""Run budgets: `[defaults] budget_usd` and `[defaults] deadline` (DESIGN.md §14).

The run is the tracker's run (from its first `execute` until `reset`). Its cost is the
sum of its lanes' costs over all their attempts (reported by the agents' CLIs, or
estimated from their tokens: costs.py). Its time is counted on the boot clock
(CLOCK_BOOTTIME: monotonic, counts suspend, and no wall-clock step moves it, the same
reason procs.py identifies processes by clock ticks since boot); the start is recorded
in the tracker (`limits`), so an `execute` resumed after a crash counts on from it.
After a reboot the boot clock starts over: the run's time as last recorded carries on.

Once a limit is reached, no new lane or rework starts; `execution.py` asks `reached`
on every tick of its loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestree import procs
from orchestree.config import Config
from orchestree.models import RunLimits, StopReason, Tracker
from orchestree.tracker import TrackerStore


def boot_seconds() -> float:
    """Seconds since boot on a clock no wall-clock step moves."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def clock(recorded: RunLimits | None) -> RunLimits:
    """The run's clock as an `execute` starting now finds it: started now for a new
    run, kept for this boot, carried over (its recorded time) after a reboot."""
    boot = procs.boot_id()
    if recorded is None:
        return RunLimits(boot_id=boot, boot_s=boot_seconds())
    if recorded.boot_id == boot:
        return recorded
    return recorded.model_copy(
        update={"boot_id": boot, "boot_s": boot_seconds(), "before_s": recorded.elapsed_s}
    )


def elapsed(limits: RunLimits) -> float:
    """The run's time so far, in seconds."""
    if limits.boot_id != procs.boot_id():  # a reader on another boot: what was recorded
        return limits.elapsed_s
    return limits.before_s + max(0.0, boot_seconds() - limits.boot_s)


def spent(tracker: Tracker) -> tuple[float, bool]:
    """The run's cost so far, and whether part of it is an estimate from tokens."""
    lanes = tracker.lanes.values()
    total = sum(lane.cost_usd or 0.0 for lane in lanes)
    return total, any(lane.cost_estimated for lane in lanes)


def reached(config: Config, tracker: Tracker) -> tuple[StopReason, str] | None:
    """Which limit the run has reached, with the words the status shows; None: none."""
    defaults = config.defaults
    if defaults.budget_usd is not None:
        total, estimated = spent(tracker)
        if total >= defaults.budget_usd:
            note = " (in part estimated from token counts and [prices])" if estimated else ""
            return "budget", f"budget ${total:.2f} of ${defaults.budget_usd:.2f} spent{note}"
    if defaults.deadline is not None and tracker.limits is not None:
        took = elapsed(tracker.limits)
        if took >= defaults.deadline:
            return "deadline", (
                f"deadline reached ({duration(took)} of {duration(defaults.deadline)})"
            )
    return None


def duration(seconds: float) -> str:
    """1h05m, 12m30s, 45s."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def begin(tracker: Tracker) -> None:
    """At an `execute`'s start: the run's clock, and no stop recorded (the limits may
    have been raised since; the loop's first tick records one again if not)."""
    tracker.limits = clock(tracker.limits).model_copy(update={"stop": None, "stop_message": None})
    for lane in tracker.lanes.values():
        if lane.waiting_for in ("budget", "deadline"):
            lane.waiting_for = None


def checkpoint(tracker: Tracker) -> None:
    """Record the run's time so far (what a reboot keeps)."""
    if tracker.limits is not None:
        tracker.limits = tracker.limits.model_copy(update={"elapsed_s": elapsed(tracker.limits)})


def record_stop(store: TrackerStore, reason: StopReason, message: str, pending: list[str]) -> None:
    """Write why the run stopped starting lanes, on the run and on its pending lanes."""

    def change(t: Tracker) -> None:
        now = clock(t.limits)
        t.limits = now.model_copy(
            update={"stop": reason, "stop_message": message, "elapsed_s": elapsed(now)}
        )
        for lane_id in pending:
            lane = t.lanes.get(lane_id)
            if lane is not None and lane.status == "pending":
                lane.waiting_for = reason

    store.update(change, "limit-reached", reason=reason, lanes=sorted(pending))


def stop_reworks(
    store: TrackerStore, config: Config, lanes: list[str], report: Callable[[str], None]
) -> bool:
    """True (said and recorded) when the run's limit is reached: no rework starts."""
    tracker = store.read()
    found = reached(config, tracker)
    if found is None:
        return False
    reason, message = found
    record_stop(store, reason, message, [])
    report(f"! {message}: no rework starts; left as they are: {', '.join(lanes)}")
    return True
