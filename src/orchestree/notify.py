"""Notifications (`[notify]`, DESIGN.md §14): tell a person when the run needs them.

One watcher per command (`execute`, `exec-lane`, `retry`, `merge`, `full`) reads the
tracker a few times a second, in a thread of its own, and turns what it finds into
events; nothing else in the run calls it. Events (one JSON object each: `event`,
`run`, `lane`, `status`, `message`, `at`):

- `lane_failed`, `lane_conflict`, `verify_failed`: a lane reached that status;
- `agent_held`: a lane is blocked because its agent is not logged in;
- `review_needed`: when the command ends, a lane completed with changes and is not
  merged (it waits for a person's review, or for `orchestree merge`);
- `budget_exhausted`, `deadline_reached`: the run's limit is reached (limits.py);
- `run_finished`: the command ended (`status`: the tracker's status).

Each event is recorded in the tracker (`notify.sent`) before it is queued, so it goes
out once, whichever command sees it first. Sending happens in `notifiers.Dispatcher`'s
threads; a notifier that fails is named once in the tracker (`notify.errors`, which
`status` shows) and once in the command's output.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from orchestree.access_tracker import now_iso
from orchestree.config import NotifyConfig
from orchestree.errors import OrchestreeError
from orchestree.executors.attempt import run_id
from orchestree.models import NotifyRecord, Tracker
from orchestree.notifiers import Dispatcher, notifiers
from orchestree.tracker import TrackerStore

TICK_S = 0.5
Reporter = Callable[[str], None]

_STATUS_EVENTS = {
    "failed": "lane_failed",
    "conflict": "lane_conflict",
    "verify_failed": "verify_failed",
}
_STOP_EVENTS = {"budget": "budget_exhausted", "deadline": "deadline_reached"}


@dataclass(frozen=True)
class Event:
    key: str  # what makes it once: the event, its lane and the lane's attempt
    body: dict[str, Any]


def _event(tracker: Tracker, event: str, lane: str | None, status: str, message: str) -> Event:
    run = run_id(tracker.repo, tracker.created_at)
    attempt = tracker.lanes[lane].attempts if lane in tracker.lanes else 0
    key = f"{event}:{lane or ''}:{attempt}"
    body = {"event": event, "run": run, "lane": lane, "status": status, "message": message,
            "at": now_iso(), "repo": tracker.repo, "attempt": attempt}  # fmt: skip
    return Event(key, body)


def lane_events(tracker: Tracker, review: bool = False) -> list[Event]:
    """The events the tracker's lanes call for now; `review`: `review_needed` too."""
    found = []
    for lane_id, lane in tracker.lanes.items():
        error = lane.error or ""
        if lane.status in _STATUS_EVENTS:
            if lane.status == "conflict" and lane.merge.conflicts:
                error = f"conflicts in {', '.join(lane.merge.conflicts)}"
            message = f"lane {lane_id} {lane.status.replace('_', ' ')}" + (
                f": {error}" if error else ""
            )
            found.append(_event(tracker, _STATUS_EVENTS[lane.status], lane_id, lane.status,
                                message))  # fmt: skip
        elif lane.status == "blocked" and lane.held:
            found.append(_event(tracker, "agent_held", lane_id, lane.status, error))
        elif review and lane.status == "completed" and not lane.no_changes and lane.kind == "lane":
            files = len(lane.changed_files)
            message = f"lane {lane_id} completed ({files} file(s) changed); it waits to be merged"
            found.append(_event(tracker, "review_needed", lane_id, lane.status, message))
    limits = tracker.limits
    if limits is not None and limits.stop is not None:
        event = _event(tracker, _STOP_EVENTS[limits.stop], None, tracker.status,
                       limits.stop_message or limits.stop)  # fmt: skip
        found.append(Event(f"{event.key}{limits.started_at}", event.body))
    return found


def finished_event(tracker: Tracker, command: str) -> Event:
    counts: dict[str, int] = {}
    for lane in tracker.lanes.values():
        counts[lane.status] = counts.get(lane.status, 0) + 1
    said = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    message = f"orchestree {command} finished: {said or 'no lanes'}"
    event = _event(tracker, "run_finished", None, tracker.status, message)
    return Event(f"{event.key}{tracker.updated_at}", event.body)


class Watcher:
    """Reads the tracker, records and queues the events not sent yet."""

    def __init__(self, store: TrackerStore, dispatcher: Dispatcher, report: Reporter) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.report = report
        self._said: set[str] = set()  # failures already recorded by this watcher

    def tick(self, extra: list[Event] | None = None, review: bool = False) -> None:
        if not self.store.exists():
            return  # `full` before its init
        tracker = self.store.read()
        sent = set(tracker.notify.sent) if tracker.notify else set()
        new = [e for e in lane_events(tracker, review) + (extra or []) if e.key not in sent]
        failures = {k: v for k, v in self.dispatcher.errors().items() if k not in self._said}
        if not new and not failures:
            return
        self._said |= set(failures)
        lines = [f"{name}: {why}" for name, why in sorted(failures.items())]
        self.store.update(self._record([e.key for e in new], lines), "notify",
                          events=[e.key for e in new], failed=lines)  # fmt: skip
        for event in new:
            self.dispatcher.put(event.body)

    @staticmethod
    def _record(keys: list[str], failures: list[str]) -> Callable[[Tracker], None]:
        def change(t: Tracker) -> None:
            before = t.notify or NotifyRecord()
            errors = before.errors + [f for f in failures if f not in before.errors]
            t.notify = NotifyRecord(sent=before.sent + keys, errors=errors)

        return change


@contextmanager
def watching(store: TrackerStore, config: NotifyConfig, command: str,
             report: Reporter) -> Iterator[None]:  # fmt: skip
    """Notify while the body runs (a command): nothing at all when `[notify]` is unset.

    At the end: the last events (`review_needed`, `run_finished`), a wait of at most a
    second for the notifiers, and one line per notifier that failed."""
    sends = notifiers(config)
    if not sends:
        yield
        return
    dispatcher = Dispatcher(sends)
    watcher = Watcher(TrackerStore(store.path), dispatcher, report)
    done = threading.Event()

    def loop() -> None:
        while not done.wait(TICK_S):
            # A busy or torn tracker, a full disk: the next tick reads it again.
            with contextlib.suppress(OrchestreeError, OSError):
                watcher.tick()

    thread = threading.Thread(target=loop, name="orchestree-notify-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        _last(watcher, command)
        dispatcher.close()
        _last_failures(watcher)


def _last(watcher: Watcher, command: str) -> None:
    try:
        watcher.tick(review=True)
        if watcher.store.exists():
            watcher.tick([finished_event(watcher.store.read(), command)])
    except OrchestreeError as exc:
        watcher.report(f"! notify: {exc}")


def _last_failures(watcher: Watcher) -> None:
    """Name each failed notifier once: in the tracker and in the command's output."""
    failures = watcher.dispatcher.errors()
    with contextlib.suppress(OrchestreeError, OSError):
        watcher.tick()  # records the failures not recorded yet
    for name, why in sorted(failures.items()):
        watcher.report(f"! notify: {name} failed: {why}; the run went on without it")
