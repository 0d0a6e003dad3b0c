"""The merge candidate as `batch.verify_in_batches` grows, verifies and cuts it back.

`merger._plan` decides each lane (`decide`: merged in memory on top of the candidate,
a conflict, or skipped); this queue remembers what the candidate was before each lane,
runs `[merge] verify` on the candidates the bisection asks about, and hands each
lane's final outcome to the report and its `Watch` in merge order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestree.merge.results import MergeReport, Outcome, Watch
    from orchestree.merge.verify import Verifier
    from orchestree.models import Tracker


class VerifyQueue:
    """The merge candidate as `batch.verify_in_batches` grows, verifies and cuts it."""

    def __init__(
        self,
        report: MergeReport,
        tracker: Tracker,
        decide: Callable[[str], Outcome],
        verify: Verifier | None,
        step: Callable[[str, str], None],
        watch: Watch | None,
        failed: dict[str, str],
    ) -> None:
        self.report, self.tracker, self.decide, self.verify = report, tracker, decide, verify
        self.step, self.watch, self.failed = step, watch, failed
        self.outcomes: dict[str, Outcome] = {}
        self.before: dict[str, str] = {}  # lane -> the candidate it was merged on top of
        self.failures: dict[str, str] = {}  # lane -> the verify output of its prefix

    def add(self, lane_id: str) -> bool:
        began = time.monotonic()
        self.step(lane_id, "merging")
        self.before[lane_id] = self.report.new
        outcome = self.decide(lane_id)
        outcome.unchanged = self.tracker.lanes[lane_id].no_changes
        outcome.seconds = time.monotonic() - began
        self.outcomes[lane_id] = outcome
        if outcome.status != "merged":
            self.failed[lane_id] = outcome.status
        return self.verify is not None and outcome.fresh

    def fails(self, lane_id: str) -> bool:
        assert self.verify is not None  # add() offers no lane to verify without it
        outcome = self.outcomes[lane_id]
        began = time.monotonic()
        self.step(lane_id, "verifying")
        failure = self.verify.run(outcome.commit or self.report.new, lane_id)
        outcome.seconds += time.monotonic() - began
        if failure is None:
            return False
        self.failures[lane_id] = failure
        return True

    def drop(self, lane_ids: list[str]) -> None:
        self.report.new = self.before[lane_ids[0]]
        for lane_id in lane_ids:
            self.failed.pop(lane_id, None)

    def settle(self, lane_id: str, broken: bool) -> None:
        outcome = self.outcomes[lane_id]
        if broken:
            why = self.failures[lane_id]
            outcome = replace(outcome, status="verify_failed", reason=why, conflicts=[])
            self.failed[lane_id] = outcome.status
        self.report.outcomes.append(outcome)
        if self.watch is not None:
            self.watch.done(outcome)
