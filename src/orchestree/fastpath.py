"""The commands a user or a script types most, without pydantic: `status`, `tracker
get`, a `tracker update` of lanes' progress, data and results, and `execute` and
`merge` when there is no lane.

Each starts within the start-up budget (issue 18: 1.5x a bare `import typer`) because
it needs only git, what the full load recorded of a valid `orchestree.toml`
(`Settings`, in `.orchestration/ledger/config.checked`) and the stdlib tracker store
that agents run (`access_tracker.py`), which refuses torn, newer and tampered files
as the full path does. Whatever these cannot do lightly returns None, and the
command takes the full path (`repo.open_repo`, the models), which validates everything
and names what is wrong: an `orchestree.toml` that is not plain TOML or whose keys
have the wrong type, an update of orchestree's own fields.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from orchestree import access_tracker as store
from orchestree import disk, git
from orchestree.errors import LockTimeout, TrackerError, UserError
from orchestree.initrepo import check_worktree_root
from orchestree.layout import CONFIG_FILE, DEFAULT_AGENT, Layout

# What `execute` and `merge` say when the tracker has no lane: the light path and the
# full one print the same words.
NO_LANES_TO_RUN = (
    "no lanes to run (no lanes yet); add them with `orchestree add-lane` or `orchestree plan`"
)
NO_LANES_TO_MERGE = "no completed lanes to merge (no lanes yet)"
# The tables of orchestree.toml that change what a `merge` of no lanes does: a verify
# program it requires, a rework note, a remote executor's checks, notifiers told at its
# end. With any of them the full path decides.
_MERGE_TABLES = frozenset({"merge", "notify", "executor"})


class Where(NamedTuple):
    """An initialised repository as the light commands see it."""

    layout: Layout
    agent: str  # [defaults] agent: the agent of lanes that name none
    tables: frozenset[str] = frozenset()  # the tables its orchestree.toml sets
    agents: frozenset[str] = frozenset()  # the agents it defines ([agents.<name>])


class Settings(NamedTuple):
    """What the light commands need of orchestree.toml, recorded by the full load."""

    worktree_root: str  # [worktree] root
    agent: str  # [defaults] agent
    tables: frozenset[str]  # the tables it sets
    agents: frozenset[str]  # the agents it defines ([agents.<name>])


def not_initialised(root: Path) -> UserError:
    return UserError(f"{root} is not initialised; run `orchestree init` there first")


def locate(path: Path) -> Where | None:
    """The initialised repository `path` is in; None when its config needs the full
    path. A repository without a tracker is refused as `open_repo` refuses it."""
    root = git.repo_root(path.resolve())
    settings = _settings(root)
    if settings is None:
        return None
    worktree_root, agent, tables, agents = settings
    check_worktree_root(root, worktree_root, ask_git=False)
    layout = Layout(root, worktree_root)
    if not layout.tracker.exists():
        raise not_initialised(root)
    return Where(layout, agent, tables, agents)


def _settings(root: Path) -> Settings | None:
    """What the light commands need of a config the full path found valid as it is now
    (`remember_valid_config`), as it recorded it; None for any other."""
    try:
        raw = (root / CONFIG_FILE).read_bytes()
    except FileNotFoundError:
        return Settings(Layout.worktree_root, DEFAULT_AGENT, frozenset(), frozenset())
    except OSError:
        return None
    try:
        digest, _, settings = Layout(root).config_checked.read_text("utf-8").partition("\n")
        if digest != _config_digest(raw):
            return None
        found = json.loads(settings)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(found, list) and len(found) == len(Settings._fields)):
        return None
    root_, agent, tables, agents = found
    if not (isinstance(tables, list) and isinstance(agents, list)):
        return None
    if not all(isinstance(name, str) for name in (root_, agent, *tables, *agents)):
        return None
    return Settings(root_, agent, frozenset(tables), frozenset(agents))


def _config_digest(raw: bytes) -> str:
    import hashlib

    from orchestree import __version__

    return f"orchestree {__version__} sha256 {hashlib.sha256(raw).hexdigest()}"


def remember_valid_config(root: Path, raw: bytes, settings: Settings) -> None:
    """After `config.load_config` found `raw` (orchestree.toml's bytes) valid: its
    digest and what the light commands need of it, so that they start without
    validating that config again, or parsing it; a config changed since takes the full
    path, which names what is wrong. A cache, not state: written only into an
    initialised repository, and a failure is ignored."""
    checked = Layout(root).config_checked
    root_, agent, tables, agents = settings
    found = json.dumps([root_, agent, sorted(tables), sorted(agents)])
    record = f"{_config_digest(raw)}\n{found}\n"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if not checked.parent.parent.is_dir() or checked.read_text("utf-8") == record:
            return
    with contextlib.suppress(OSError):
        checked.parent.mkdir(mode=0o700, exist_ok=True)  # the ledger's, made by now or soon
        temp = checked.with_name(f".{checked.name}.{os.getpid()}.tmp")
        temp.write_text(record, encoding="utf-8")
        os.replace(temp, checked)


def run_location(path: Path) -> tuple[Path, Path]:
    """(where the caller is, the run's repository root) for `tracker get/update`.

    `ORCHESTREE_TRACKER` (in every agent's environment) names the run's tracker. Inside
    a lane's worktree the repository is the one that worktree belongs to (its git
    common dir), never the worktree itself: a tracker there would be nobody's.
    """
    named = os.environ.get("ORCHESTREE_TRACKER")
    here = git.repo_root(path.resolve())
    if named:
        tracker = Path(named)
        if tracker.name != "tracker.json" or not tracker.is_file():
            raise UserError(
                f"ORCHESTREE_TRACKER is {named!r}, which is no tracker; unset it or point it "
                "at a repository's .orchestration/tracker.json"
            )
        return here, tracker.resolve().parent.parent
    common = git.common_dir(here)
    return here, common.parent if common.name == ".git" else here


def run_lane(here: Path, layout: Layout) -> str | None:
    """The lane the caller speaks for: `ORCHESTREE_LANE`, else the lane whose worktree
    (`agent-<lane>`) it is in; None outside lanes."""
    try:
        lane = store.bound_lane_name(os.environ.get("ORCHESTREE_LANE"))
    except store.InvalidUpdateError as exc:
        raise UserError(f"{exc}; nothing was read or written") from None
    if lane is None and here.parent == layout.worktrees and here.name.startswith("agent-"):
        lane = here.name[len("agent-") :]
    return lane


def parse_lane_json(text: str, what: str) -> dict[str, Any]:
    """A JSON object from the command line or a file; one line naming what is wrong."""
    try:
        data = store.loads_strict(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # NaN, Infinity, 1e400
        raise UserError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f'{what} must be a JSON object, e.g. \'{{"tasks": ["..."]}}\'')
    return data


def lookup(data: Any, key_path: str | None) -> Any:
    """The tracker data, or the value at a dotted path (`lanes.docs.status`)."""
    if not key_path:
        return data
    for part in key_path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise UserError(f"the tracker has no {key_path!r} (stopped at {part!r})")
    return data


def read(layout: Layout) -> dict[str, Any] | None:
    """The tracker orchestree acts on (`access_tracker.trusted_view`), as its ledger
    records it: orchestree validated that when it wrote it, and the helper's checks
    passed the agent fields taken from tracker.json. None for a tracker without a
    ledger (from before them), which only the full path validates."""
    view = _trusted(layout)
    return view.data if view.signed else None


def unedited(layout: Layout) -> dict[str, Any] | None:
    """`read`, and None also when tracker.json holds edits orchestree leaves out: the
    commands that act on the tracker name them (`TrackerStore.take_edits`)."""
    view = _trusted(layout)
    return view.data if view.signed and not view.ignored else None


def _trusted(layout: Layout) -> store.View:
    # A tracker of 500 lanes decodes into some 100,000 objects, none in a cycle: the
    # cyclic collector's passes over them while they are made cost `status` 5 ms.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with store_errors(layout.tracker):
            return store.trusted_view(str(layout.tracker))
    finally:
        if collecting:
            gc.enable()


def nothing_to_execute(path: Path) -> bool:
    """Whether the tracker of the repository at `path` has no lane at all, so that
    `execute` has nothing to run (it says `NO_LANES_TO_RUN`). False also when that
    needs the full path: a config to validate, a tracker without a ledger, edits of
    tracker.json to name."""
    where = locate(path)
    data = None if where is None else unedited(where.layout)
    return data is not None and not data.get("lanes")


def nothing_to_merge(path: Path, check: bool) -> bool:
    """Whether `merge` (`--check`: predicting) of the repository at `path` finds no lane
    and nothing else to say or refuse, so that it says only `NO_LANES_TO_MERGE`, as the
    full path would. False for anything the full path might decide otherwise: a config
    table it acts on (`_MERGE_TABLES`), an interrupted merge to finish, the run lock
    held, the base worktree off its branch or with changes, the base branch gone."""
    where = locate(path)
    if where is None or where.tables & _MERGE_TABLES or where.layout.merge_journal.exists():
        return False
    if check:  # predicting takes no lock
        return _no_lanes_on_a_clean_base(where.layout)
    try:  # the lock `merge` holds: when someone else has it, the full path refuses
        with store.locked(str(where.layout.run_lock), timeout=0):
            return _no_lanes_on_a_clean_base(where.layout)
    except store.LockTimeoutError:
        return False


def _no_lanes_on_a_clean_base(layout: Layout) -> bool:
    """No lane, and the base worktree on the base branch without changes to tracked
    files (`merger.base_worktree_problems`), and that branch there."""
    data = unedited(layout)
    if data is None or data.get("lanes"):
        return False
    root, base = layout.root, str(data["base_branch"])
    return (
        git.current_branch(root) == base
        and not git.dirty_files(root, untracked=False)
        and git.head_commit(root, f"refs/heads/{base}") is not None
    )


def tracker_get(path: Path, key_path: str | None) -> tuple[bool, Any]:
    """(True, the value) of `tracker get`; (False, None) when it needs the full path."""
    here, main = run_location(path)
    where = locate(main)
    if where is None:
        return False, None
    run_lane(here, where.layout)  # a bad ORCHESTREE_LANE is refused here too
    data = read(where.layout)
    return (False, None) if data is None else (True, lookup(data, key_path))


def tracker_update(path: Path, changes: Any) -> bool:
    """`tracker update` of only existing lanes' progress, data and results, as the
    agents' helper writes it; False (nothing written) for anything else, which the full
    path validates and writes, or refuses with its reason."""
    if not _agent_fields_only(changes):
        return False
    here, main = run_location(path)
    where = locate(main)
    if where is None:
        return False
    lane = run_lane(here, where.layout)
    actor = "cli" if lane is None else f"agent-{lane}"
    try:
        with store_errors(where.layout.tracker):
            store.update(str(where.layout.tracker), changes, actor, lane)
    except UserError:
        return False  # the full path says why, in its words
    return True


def _agent_fields_only(changes: Any) -> bool:
    """Only `lanes.<id>.<progress|data|results>`: what the helper may write."""
    if not isinstance(changes, dict) or set(changes) != {"lanes"}:
        return False
    lanes = changes["lanes"]
    return (
        isinstance(lanes, dict)
        and bool(lanes)
        and all(
            isinstance(fields, dict) and set(fields) <= set(store.AGENT_FIELDS)
            for fields in lanes.values()
        )
    )


@contextlib.contextmanager
def store_errors(path: Path) -> Iterator[None]:
    """Around a use of the stdlib store: a full disk is one line naming it (the tracker
    intact), and the store's errors (`access_tracker` cannot import ours) become
    orchestree's, each with its exit code."""
    try:
        with disk.writing(path):
            yield
    except store.InvalidUpdateError as exc:
        raise UserError(f"{exc}; nothing was written") from None
    except store.LockTimeoutError as exc:
        raise LockTimeout(str(exc)) from None
    except store.TrackerFileError as exc:
        raise TrackerError(str(exc)) from None
