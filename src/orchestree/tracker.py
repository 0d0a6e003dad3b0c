"""The one owner of tracker.json: locked, atomic, validated read-modify-write.

Built on the stdlib store in `access_tracker.py` (the same code agents run), with
pydantic validation. A store keeps the tracker it last read or wrote in memory
(`snapshot.py`): while the files are unchanged, a read costs three file reads and an
update validates and serialises only the lanes and agents it changed, so a write at
500 lanes costs about what it does at 10. Nobody else opens the tracker for writing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestree import access_tracker as store
from orchestree import fastpath, snapshot
from orchestree.errors import LockTimeout, TrackerError, UserError
from orchestree.initrepo import say_waiting
from orchestree.models import Tracker, describe_validation_error


def _validated(data: dict[str, Any]) -> Tracker:
    try:
        return Tracker.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, "tracker update")) from None


_Files = tuple[bytes | None, bytes | None, bytes | None]
# One change of an `update_many`: the change, its event's name, the event's details.
Change = tuple[Callable[[Tracker], None], str, Mapping[str, Any]]


class TrackerStore:
    """Read and write one tracker file. Every write is one locked transaction."""

    def __init__(self, path: Path, lock_timeout: float = store.LOCK_TIMEOUT_S) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._edits: list[str] = []  # edits of tracker.json left out, not yet taken
        self._snap: snapshot.Snapshot | None = None  # the files as last read or written

    def exists(self) -> bool:
        return self.path.exists()

    def read_raw(self) -> dict[str, Any]:
        """The tracker orchestree acts on (its ledger's record, with the lanes' agent
        fields from tracker.json: `access_tracker.trusted_view`), checked for tears and
        versions but not validated. `take_edits` says what of tracker.json it left out."""
        try:
            view = store.trusted_view(str(self.path))
        except store.TrackerFileError as exc:
            raise TrackerError(str(exc)) from None
        self._note_edits(view.ignored)
        return view.data

    def get(self, key_path: str | None) -> Any:
        """The tracker as JSON data, or the value at a dotted path (`lanes.docs.status`)."""
        return fastpath.lookup(self.read_raw(), key_path)

    def _note_edits(self, ignored: list[str]) -> None:
        self._edits.extend(i for i in ignored if i not in self._edits)

    def take_edits(self) -> list[str]:
        """What reads and writes since the last call found in tracker.json and left out
        (a lane added, a status or a pid changed: docs/trust.md), each named once."""
        edits, self._edits = self._edits, []
        return edits

    def read(self) -> Tracker:
        """The tracker orchestree acts on, validated. Its lanes and agents are shared
        with the store's snapshot: read them, change the tracker only through `update`."""
        return snapshot.shared(self._snapshot(locked=False).tracker)

    def _files(self) -> _Files:
        ledger, key = store.ledger_paths(str(self.path))
        return store._read_bytes(key), store._read_bytes(ledger), store._read_bytes(str(self.path))

    def _snapshot(self, locked: bool) -> snapshot.Snapshot:
        """The snapshot of the files as they are now: the one kept while they are byte
        for byte the same, else made again from the trusted view, validated whole.
        `locked`: the caller holds the tracker lock."""
        files = self._files()
        snap = self._snap
        if snap is not None and snap.files == files:
            self._note_edits(snap.ignored)
            return snap
        # Files read before the view: if a writer slips in between, the next call sees
        # files that differ from these and makes the snapshot again.
        files, view = self._view(files)
        if view.ignored and not locked:
            # Another writer (a thread, `orchestree cancel`) may be between its two
            # renames, tracker.json then the ledger: what looks edited is that, unless
            # it still does while we hold the lock every writer holds throughout.
            lock_path, _ = store.paths(str(self.path))
            try:
                with store.locked(lock_path, self.lock_timeout, say_waiting):
                    files, view = self._view(self._files())
            except store.LockTimeoutError as exc:
                raise LockTimeout(str(exc)) from None
        self._note_edits(view.ignored)
        text = b"" if view.as_written else view.text.encode("utf-8")
        self._snap = snapshot.make(files, self._model(view.data), view.as_written, text,
                                   view.ignored)  # fmt: skip
        return self._snap

    def _view(self, files: _Files) -> tuple[_Files, store.View]:
        try:
            return files, store.trusted_view(str(self.path))
        except store.TrackerFileError as exc:
            raise TrackerError(str(exc)) from None

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

        What `change` touched is validated (each lane and agent it looked up, the
        tracker's own fields, the dependency graph when lanes or dependencies changed,
        the state machine), as validating the whole tracker would. When the tracker's
        `phase` or `status` changes, the event records the new ones under `tracker`, so
        events.jsonl tells the run's phases in order.
        """
        return self.update_many([(change, event, detail)])

    def update_many(self, changes: list[Change]) -> Tracker:
        """`update` for several changes (change, event, detail) at once: applied in
        order and written in one transaction (one set of fsyncs), each with its event;
        if one fails, none is written. The state machine judges each lane's status from
        before the first change to after the last: one status change a lane."""
        lock_path, events_path = store.paths(str(self.path))
        with self._writing(), store.locked(lock_path, self.lock_timeout, say_waiting):
            return self._update_locked(changes, events_path)

    def _update_locked(self, changes: list[Change], events_path: str) -> Tracker:
        snap = self._snapshot(locked=True)
        model = snapshot.for_change(snap)
        records: list[dict[str, Any]] = []
        for change, event, detail in changes:
            record: dict[str, Any] = {"actor": "orchestree", "event": event, **detail}
            before = (model.phase, model.status)
            change(model)
            if (model.phase, model.status) != before:
                record["tracker"] = {"phase": model.phase, "status": model.status}
            records.append(record)
        model.updated_at = store.now_iso()
        changed = snapshot.touched(model) or {
            name: set(getattr(snap.tracker, name)) | set(getattr(model, name))
            for name in ("lanes", "agents")
        }
        self._check(snap.tracker, model, changed)
        payload, fragments = snapshot.serialise(snap, model, changed)
        self._snap = None  # until the files are written whole
        backup = True if snap.as_written else snap.text
        ledger_bytes = store.write_signed(str(self.path), payload, backup=backup)
        if snap.ignored:
            store.append_event(events_path, {"actor": "orchestree", "event": "edit-ignored",
                                             "ignored": snap.ignored})  # fmt: skip
        for record in records:
            store.append_event(events_path, record)
        written = snapshot.settle(model)
        _, key = store.ledger_paths(str(self.path))
        files = (snap.files[0] or store._read_bytes(key), ledger_bytes, payload)
        self._snap = snapshot.Snapshot(files, written, fragments)
        return snapshot.shared(written)

    @staticmethod
    def _check(old: Tracker, new: Tracker, changed: dict[str, set[str]]) -> None:
        """Validate what changed; when that finds a problem, validate the whole tracker
        for the message a whole validation gives."""
        try:
            snapshot.check(old, new, changed)
        except store.InvalidUpdateError:
            raise
        except (ValidationError, UserError, ValueError) as exc:
            _validated(new.model_dump(mode="json", warnings=False))
            raise UserError(f"tracker update: {exc}") from None

    def merge(
        self, changes: dict[str, Any], actor: str = "cli", lane: str | None = None
    ) -> Tracker:
        """Deep-merge a JSON update (the seed's contract), validated as a whole.

        It may not create lanes (only `add-lane` and `plan` do: a misspelt id is refused
        with the near matches). From inside a lane (`lane`), it is bound as the helper
        is: only that lane's agent fields, within the caps."""
        if not isinstance(changes, dict):
            raise UserError("a tracker update must be a JSON object, e.g. '{\"lanes\": {...}}'")

        def change(data: dict[str, Any]) -> dict[str, Any]:
            if lane is not None:
                store.check_agent_update(changes, data, lane)
            known = data.get("lanes") or {}
            for lane_id in changes.get("lanes") or {}:
                if lane_id not in known:
                    raise UserError(
                        f"there is no lane {lane_id!r}{store.near_matches(lane_id, known)}; "
                        "lanes are created only by `orchestree add-lane` and `orchestree plan`"
                    )
            merged: dict[str, Any] = store.deep_merge(data, changes)
            return merged

        record = {"actor": actor, "event": "update", "update": changes}
        return self._transact(change, record if lane is None else {**record, "lane": lane})

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
        self._snap = None
        with self._writing(), store.locked(lock_path, self.lock_timeout, say_waiting):
            store.write_owned(str(self.path), data)
            store.append_event(events_path, {"actor": "orchestree", "event": event})

    def _transact(
        self, change: Callable[[dict[str, Any]], dict[str, Any]], event: dict[str, Any]
    ) -> Tracker:
        """One locked transaction; the tracker as written, validated once."""
        written: list[Tracker] = []
        self._snap = None

        def validate(old: dict[str, Any], new: dict[str, Any]) -> bytes:
            written.append(_validated(new))
            return written[-1].model_dump_json().encode("utf-8")

        with self._writing():
            store.transact(
                str(self.path),
                change,
                event,
                validate=validate,
                timeout=self.lock_timeout,
                on_wait=say_waiting,
                on_ignored=self._note_edits,
            )
        return written[-1]

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Around every write: a full disk is one line naming it (the tracker intact),
        and the stdlib store's errors (`access_tracker` cannot import ours) become
        orchestree's, each with its exit code."""
        with fastpath.store_errors(self.path):
            yield
