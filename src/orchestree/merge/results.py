"""What a merge takes on (`MergeScope`) and what it decided: each lane's `Outcome`, the
whole `MergeReport` (and its `merge --json` shape), and the `Watch` that hears a merge
as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

STATUSES = ("merged", "conflict", "verify_failed", "skipped")


@dataclass(frozen=True)
class MergeScope:
    """Which lanes one merge takes: every completed lane or just `lane_id`, of any kind
    or only of `kind` (the probes); with `check`, a prediction that changes nothing."""

    lane_id: str | None = None
    check: bool = False
    kind: str | None = None


EVERY_LANE = MergeScope()


@dataclass
class Outcome:
    """What happened (or, with --check, would happen) to one lane."""

    lane_id: str
    status: str  # merged | conflict | verify_failed | skipped
    commit: str | None = None
    conflicts: list[str] = field(default_factory=list)
    reason: str = ""  # why it was skipped, the verify output's tail, or "already in <base>"
    unchanged: bool = False  # the lane completed without changing any file
    seconds: float = 0.0  # how long deciding it took (its verify, mostly)
    reworks: int = 0  # how many times the lane went back to its agent (rework.py)

    @property
    def verify_tail(self) -> str | None:
        """The failed verify's command, verdict and output tail; None unless verify_failed."""
        return self.reason if self.status == "verify_failed" else None

    @property
    def fresh(self) -> bool:
        """Merged by this plan, as a new merge commit on top of the candidate."""
        return self.status == "merged" and not self.reason


@dataclass
class MergeReport:
    check: bool
    base_branch: str
    old: str  # the base branch's head the plan started from
    new: str  # the final candidate (== old when nothing new is merged)
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Lanes left from earlier merges that still need a person: lane -> its status.
    outstanding: dict[str, str] = field(default_factory=dict)
    verify_runs: int = 0  # how many times `[merge] verify` ran (batches and bisection)

    @property
    def exit_code(self) -> int:
        """1 when a lane of this merge, or one still outstanding from an earlier one
        (conflicted, failed, not merged), needs a person: re-running `merge` does not
        make a conflict go away."""
        bad = any(o.status != "merged" for o in self.outcomes) or self.outstanding
        return 1 if bad else 0


def as_json(report: MergeReport) -> dict[str, object]:
    """`merge --json` / `merge --check --json`: the report for scripts (README shape)."""
    return {
        "base_branch": report.base_branch,
        "check": report.check,
        "old": report.old,
        "new": report.new,
        "exit_code": report.exit_code,
        "verify_runs": report.verify_runs,
        "lanes": [
            {
                "id": o.lane_id,
                "status": o.status,
                "commit": o.commit,
                "conflicts": o.conflicts,
                "verify_tail": o.verify_tail,
                "reworks": o.reworks,
                "reason": o.reason if o.status != "verify_failed" else "",
                "unchanged": o.unchanged,
            }
            for o in report.outcomes
        ],
        "outstanding": report.outstanding,
        "notes": report.notes,
    }


class Watch(Protocol):
    """Hears a merge as it goes, so a slow verify is not a silent one."""

    def begin(self, order: list[str]) -> None:
        """The lanes about to be decided, in merge order."""

    def step(self, lane_id: str, what: str) -> None:
        """`what` (merging, verifying) starts now for `lane_id`."""

    def done(self, outcome: Outcome) -> None:
        """`outcome` is decided."""
