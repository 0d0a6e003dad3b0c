"""One attempt of one lane: the contracts it passes through (DESIGN.md §12).

Following one lane from `orchestree execute` to its agent and back:

1. `execution.py` (the orchestrator) hands an executor a `LaneSpec` and keeps the
   handle `submit` returns in the tracker. It stays the tracker's only writer.
2. The executor (`local.py`, or `dask.py` whose task is `dask_task.py`) has
   `launch.py` turn it into an `AttemptSpec`: the agent's argv, environment and
   worktree, and the git work around it. `launch.py` writes it to
   `<stem>spec.json` and starts the supervisor on it (`AttemptFiles` names the files).
3. The supervisor (`supervisor.py`) reads the spec, refusing a version it does not
   know, runs the agent, commits what it left and writes an `AttemptResult` to
   `<stem>result.json`.
4. The executor reads the result back (`launch.outcome`) and reports a `LaneUpdate`
   of kind `finished`; `lanebook.py` records it and `outcome.py` judges what it means.

An executor never decides a second attempt: that is the orchestrator's decision.
Both files carry a `version`: `from_json` refuses any other, and unknown keys, missing
keys or wrong types, with one line saying which (`ContractError`). They are read only
by the same orchestree that wrote them, so there is nothing older to upgrade.

Standard library, `git` and `procs` only (the config and the lane are types here):
the supervisor imports this module and must start in milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from orchestree import git
from orchestree.procs import Identity

if TYPE_CHECKING:
    from orchestree.config import Config
    from orchestree.models import Lane

UpdateKind = Literal["started", "output", "progress", "finished"]

# Why an attempt ended. `exited` and `timeout` come from the agent's own run; the
# others mean the agent did not finish its work.
REASONS = (
    "exited",  # the agent exited by itself; its exit code and output decide
    "timeout",  # the lane's deadline passed; the agent's tree was ended
    "cancelled",  # `orchestree cancel` or Ctrl-C
    "interrupted",  # the supervisor got SIGINT
    "parent-died",  # the supervisor's parent (a Dask worker) went away
    "setup-failed",  # `[worktree] setup` failed
    "error",  # the attempt could not run (a git step or the supervisor failed)
    "gone",  # its process vanished without an outcome (the orchestrator was stopped)
    "lost",  # the Dask worker running it died
    "abandoned",  # the Dask worker was closing (retired, scaled down): agent ended
    "claim-conflict",  # another run holds this attempt's claim: this run stopped
    "untrusted",  # the agent subverted its worktree (`worktree_guard`): nothing committed
)
RETRY_REASONS = frozenset({"gone", "lost", "abandoned", "claim-conflict", "parent-died"})


@dataclass(frozen=True)
class LaneSpec:
    """The orchestrator's order to an executor: run this attempt of this lane."""

    lane_id: str
    attempt: int
    lane: Lane
    config: Config
    base: str  # the run's base commit
    start: str  # the base with the lane's dependencies merged in
    expected: str | None  # the lane branch a retry continues from (the push lease)
    port: int
    identity: tuple[str, str]  # git user.name, user.email for commits made for the lane
    run_setup: bool = True


@dataclass(frozen=True)
class LaneUpdate:
    """What an executor reports back about a submitted attempt: started, a chunk of
    output or progress (from a remote lane), or finished with its outcome."""

    lane_id: str
    attempt: int
    kind: UpdateKind
    reason: str | None = None  # finished: one of REASONS
    exit_code: int | None = None
    error: str | None = None
    output: str = ""  # finished: the attempt's output (tail); output: a new chunk
    head: str | None = None  # finished: the lane branch's head after the attempt
    changed: list[str] | None = None  # finished: files changed since the start, if known
    host: str | None = None
    worker: str | None = None
    pid: int | None = None
    pid_identity: Identity | None = None  # started: the local supervisor's identity
    progress: Any = None
    data: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    refs_restored: list[str] = field(default_factory=list)  # finished: see sandbox.py


class LaneExecutor(Protocol):
    """Where lanes run: `submit` a `LaneSpec`, `poll` for `LaneUpdate`s."""

    kind: str

    def submit(self, spec: LaneSpec) -> str:
        """Start the attempt; return a handle the tracker keeps (for `reattach`)."""
        ...

    def poll(self, timeout: float = 0.0) -> list[LaneUpdate]:
        """Updates since the last poll; waits up to `timeout` s for the first one."""
        ...

    def cancel(self, lane_id: str, attempt: int) -> None:
        """Stop the attempt; its `finished` update arrives through `poll`."""
        ...

    def fetch(self, lane_id: str) -> str | None:
        """Make `lane-<id>` a local branch (a no-op locally); return its head."""
        ...

    def reattach(self, handles: list[str]) -> list[LaneUpdate]:
        """After an orchestrator restart: follow these attempts again."""
        ...

    def close(self) -> None: ...


def run_id(tracker_repo: str, created_at: str) -> str:
    """A short id of this tracker's run: stable across restarts, new after `reset`."""
    return hashlib.sha1(f"{tracker_repo}\0{created_at}".encode()).hexdigest()[:8]


# --- The supervisor's contract: the spec it reads, the result it writes --------------

SUPERVISOR_SAYS = "orchestree: "  # how every line the supervisor writes to the log starts
T = TypeVar("T")


class ContractError(ValueError):
    """A spec or result file that is not this orchestree's: one line saying why."""


@dataclass(frozen=True)
class AttemptFiles:
    """One attempt's files, side by side: `<stem>spec.json` (what the launcher asks),
    `<stem>result.json` (what the supervisor answers), `<stem>agent.json` (the agent's
    identity, for ending its tree if the supervisor dies) and `<stem>supervisor` (the
    supervisor's identity, for adopting it before the tracker records it)."""

    folder: Path
    stem: str = ""  # "<lane>.<attempt>." in a repository's runs folder

    @property
    def spec(self) -> Path:
        return self.folder / f"{self.stem}spec.json"

    @property
    def result(self) -> Path:
        return self.folder / f"{self.stem}result.json"

    @property
    def agent(self) -> Path:
        return self.folder / f"{self.stem}agent.json"

    @property
    def supervisor(self) -> Path:
        return self.folder / f"{self.stem}supervisor"

    @classmethod
    def of_spec(cls, spec: Path) -> AttemptFiles | None:
        """The files of the attempt whose spec is `spec`; None for another name."""
        if not spec.name.endswith("spec.json"):
            return None
        return cls(spec.parent, spec.name.removesuffix("spec.json"))


@dataclass(frozen=True)
class NewWorktree:
    """A worktree the supervisor registers (`git worktree add`) before the agent runs."""

    branch: str
    start: str


@dataclass(frozen=True)
class Share:
    """`[worktree] share`: the template tree's home, its base commit, folders and key
    (`worktree_share.key_at`: the orchestrator asks git once a run, not each lane)."""

    home: str
    base: str
    folders: list[str]
    key: str


@dataclass(frozen=True)
class AttemptSpec:
    """What the supervisor needs to run one agent and do the lane's git work around it:
    the launcher writes it (`to_json`), the supervisor reads it (`from_json`)."""

    VERSION: ClassVar[int] = 1

    lane_id: str
    attempt: int
    argv: list[str]
    env: dict[str, str]
    cwd: str  # the lane's worktree (or, on a Dask worker, its clone)
    log: str  # the agent's output is appended here
    timeout_s: float
    grace_s: float  # TERM, then KILL after this long
    setup: str = ""  # `[worktree] setup`, run once in a new worktree before the agent
    die_with_parent: bool = False  # end the agent when the parent dies (stdin EOF)
    root: str = ""  # the repository the worktree belongs to (a clone: itself)
    clone: bool = False  # `cwd` is a clone of its own, not a worktree of `root`
    register: NewWorktree | None = None
    includes: list[str] = field(default_factory=list)  # `.worktreeinclude` files to copy in
    helper: str = ""  # the tracker helper to copy in, unless the repository tracks one
    setup_snapshot: str = ""  # where what setup left is recorded (never committed)
    share: Share | None = None
    pool: dict[str, str] | None = None  # a `[worktree] pool` spare to claim (worktree_pool.plan)
    sandbox: dict[str, Any] | None = None  # `sandbox.plan`'s description; None: none
    branch: str = ""
    start_commit: str = ""  # the changed files are counted from here
    commit_message: str = ""  # for what the agent left uncommitted; "": commit nothing
    keep_out: list[str] = field(default_factory=list)  # never in the leftover commit

    def to_json(self) -> str:
        return _dump(self)

    @classmethod
    def from_json(cls, text: str) -> AttemptSpec:
        return _load_versioned(cls, text, "attempt spec")


@dataclass
class AttemptResult:
    """How an attempt ended, as its supervisor (or, remotely, its Dask task) saw it."""

    VERSION: ClassVar[int] = 1

    reason: str  # one of REASONS
    exit_code: int | None = None
    error: str | None = None
    agent_pid: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    committed: bool = False  # the supervisor committed what the agent left: `head` is set
    head: str | None = None  # the lane branch's head after the attempt
    changed: list[str] | None = None  # files changed from the start commit to `head`
    commit_error: str | None = None  # why the leftover commit failed
    refs_restored: list[str] = field(default_factory=list)  # see sandbox.py
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    host: str | None = None  # a remote attempt's host and Dask worker
    worker: str | None = None
    output: str = ""  # a remote attempt's output (tail); a local one's is in its log

    def to_json(self) -> str:
        return _dump(self)

    @classmethod
    def from_json(cls, text: str) -> AttemptResult:
        result = _load_versioned(cls, text, "attempt result")
        if result.reason not in REASONS:
            raise ContractError(f"attempt result: unknown reason {result.reason!r}")
        return result

    def update(self, lane_id: str, attempt: int, head: str | None, output: str) -> LaneUpdate:
        """The `finished` update that reports this result."""
        return LaneUpdate(
            lane_id, attempt, "finished", reason=self.reason, exit_code=self.exit_code,
            error=self.error, output=output, head=head, changed=self.changed,
            host=self.host, worker=self.worker, timings=dict(self.timings),
            refs_restored=list(self.refs_restored),
        )  # fmt: skip


def read_result(path: Path) -> AttemptResult | None:
    """The result at `path`; None while there is none (or only a torn one: it is
    written atomically, so that means none). A result of another version or shape is
    an `error` outcome saying so."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return AttemptResult.from_json(text)
    except ContractError as exc:
        return AttemptResult("error", error=str(exc))


def changed_files(
    root: Path,
    start: str | None,
    head: str | None,
    counted_to: str | None = None,
    counted: list[str] | None = None,
) -> list[str]:
    """The files an attempt changed from `start` to `head`: those its supervisor
    `counted`, while `head` is the head it `counted_to`; else asked of git."""
    if counted is not None and counted_to == head:
        return counted
    return git.changed_files(root, start, head) if start and head else []


def agent_output(text: str) -> str:
    """The agent's own words: the log without the lines the supervisor wrote."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(SUPERVISOR_SAYS))


# --- Reading a versioned file strictly ------------------------------------------------

Versioned = TypeVar("Versioned", AttemptSpec, AttemptResult)


def _dump(obj: AttemptSpec | AttemptResult) -> str:
    return json.dumps({"version": obj.VERSION, **dataclasses.asdict(obj)})


def _load_versioned(cls: type[Versioned], text: str, what: str) -> Versioned:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ContractError(f"{what}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ContractError(f"{what}: not a JSON object")
    version = data.pop("version", None)
    if version != cls.VERSION:
        raise ContractError(
            f"{what} version {version!r} is unknown here (this orchestree reads version "
            f"{cls.VERSION}): another orchestree wrote it; retry the lane with this one"
        )
    return _load(cls, data, what)


def _load(cls: type[T], data: Any, where: str) -> T:
    """`data` as the dataclass `cls`: every field present, nothing else, each typed."""
    if not isinstance(data, dict):
        raise ContractError(f"{where}: expected an object, got {_kind(data)}")
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ContractError(f"{where}: unknown key {unknown[0]!r}")
    missing = [name for name in names if name not in data]
    if missing:
        raise ContractError(f"{where}: missing key {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _fit(data[name], hints[name], f"{where}: {name}") for name in names})


def _fit(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the type `hint` (the few kinds the contract uses)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _fit(value, inner, where)
    if origin is list and isinstance(value, list):
        return [_fit(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        return {str(k): _fit(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _load(hint, value, where)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, bool) and type(value) is hint:
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise ContractError(f"{where}: expected {expected}, got {_kind(value)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
