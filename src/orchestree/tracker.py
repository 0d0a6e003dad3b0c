"""The one owner of tracker.json: locked, atomic, validated read-modify-write.

Built on the stdlib store in `access_tracker.py` (the same code agents run), with
pydantic validation of the whole tracker on every write. Nobody else opens the
tracker for writing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestree import access_tracker as store
from orchestree import disk
from orchestree.errors import LockTimeout, TrackerError, UserError
from orchestree.models import Tracker, describe_validation_error


def _say_waiting(holder: int | None) -> None:
    who = f"process {holder}" if holder else "another process"
    print(f"orchestree: waiting for the tracker lock held by {who}...", file=sys.stderr)


def _validated(data: dict[str, Any]) -> Tracker:
    try:
        return Tracker.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, "tracker update")) from None


class TrackerStore:
    """Read and write one tracker file. Every write is one locked transaction."""

    def __init__(self, path: Path, lock_timeout: float = store.LOCK_TIMEOUT_S) -> None:
        self.path = path
        self.lock_timeout = lock_timeout

    def exists(self) -> bool:
        return self.path.exists()

    def read_raw(self) -> dict[str, Any]:
        """The tracker as JSON, checked for tears and versions but not validated."""
        try:
            return store.read(str(self.path))
        except store.TrackerFileError as exc:
            raise TrackerError(str(exc)) from None

    def read(self) -> Tracker:
        return self._model(self.read_raw())

    def _model(self, data: dict[str, Any]) -> Tracker:
        """The tracker on disk as a model; refused like a torn file when it is invalid
        (an agent's helper checks statuses, not every field)."""
        try:
            return Tracker.model_validate(data)
        except (ValidationError, UserError) as exc:
            problem = (
                describe_validation_error(exc, "tracker")
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            raise TrackerError(
                f"{self.path} is not a valid tracker ({problem}); "
                f"the last good copy is {self.path}.bak"
            ) from None

    def create(self, tracker: Tracker) -> None:
        """Write a new tracker; the caller checked that none exists."""
        self._write_whole(tracker, "init")

    def update(self, change: Callable[[Tracker], None], event: str, **detail: Any) -> Tracker:
        """Apply `change` to the validated tracker under the lock; write it if valid.

        When the tracker's `phase` or `status` changes, the event records the new ones
        under `tracker`, so events.jsonl tells the run's phases in order.
        """
        record: dict[str, Any] = {"actor": "orchestree", "event": event, **detail}

        def apply(data: dict[str, Any]) -> dict[str, Any]:
            model = self._model(data)
            before = (model.phase, model.status)
            change(model)
            if (model.phase, model.status) != before:
                record["tracker"] = {"phase": model.phase, "status": model.status}
            return model.model_dump(mode="json")

        return self._transact(apply, record)

    def merge(self, changes: dict[str, Any], actor: str = "cli") -> Tracker:
        """Deep-merge a JSON update (the seed's contract), validated as a whole."""
        if not isinstance(changes, dict):
            raise UserError("a tracker update must be a JSON object, e.g. '{\"lanes\": {...}}'")
        return self._transact(
            lambda data: store.deep_merge(data, changes),
            {"actor": actor, "event": "update", "update": changes},
        )

    def archive(self, folder: Path, stamp: str) -> Path:
        """Copy the current tracker to `folder/<stamp>.json` (the tracker stays)."""
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{stamp}.json"
        n = 1
        while dest.exists():
            dest = folder / f"{stamp}-{n}.json"
            n += 1
        data = self.read_raw()
        dest.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return dest

    def replace(self, tracker: Tracker, event: str) -> None:
        """Start over with `tracker` (used by reset, after archiving)."""
        self._write_whole(tracker, event)

    def _write_whole(self, tracker: Tracker, event: str) -> None:
        lock_path, events_path = store.paths(str(self.path))
        data = tracker.model_dump(mode="json")
        try:
            with disk.writing(self.path), store.locked(lock_path, self.lock_timeout, _say_waiting):
                store.write_atomic(str(self.path), data)
                store.append_event(events_path, {"actor": "orchestree", "event": event})
        except store.LockTimeoutError as exc:
            raise LockTimeout(str(exc)) from None

    def _transact(
        self, change: Callable[[dict[str, Any]], dict[str, Any]], event: dict[str, Any]
    ) -> Tracker:
        """One locked transaction; the tracker as written, validated once."""
        written: list[Tracker] = []

        def validate(old: dict[str, Any], new: dict[str, Any]) -> bytes:
            written.append(_validated(new))
            return written[-1].model_dump_json().encode("utf-8")

        try:
            with disk.writing(self.path):  # a full disk: one line naming it, tracker intact
                store.transact(
                    str(self.path),
                    change,
                    event,
                    validate=validate,
                    timeout=self.lock_timeout,
                    on_wait=_say_waiting,
                )
            return written[-1]
        except store.InvalidUpdateError as exc:
            raise UserError(f"{exc}; nothing was written") from None
        except store.LockTimeoutError as exc:
            raise LockTimeout(str(exc)) from None
        except store.TrackerFileError as exc:
            raise TrackerError(str(exc)) from None
