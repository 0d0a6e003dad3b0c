"""What a run needs, checked before anything changes: `orchestree doctor` and the
preflight of `full`, `probes` and `merge` (issue 21, item 1).

A check is a row: what is needed, whether it is there, and what was found or what to
do. `require` turns the failed rows of one command into ONE refusal naming every
missing program, so a user never learns of them one run at a time.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestree import agents, git
from orchestree.config import BUILTIN_PROBE_NAMES, CONFIG_FILE, Config, load_config, probe_set
from orchestree.errors import EnvironmentRefused, OrchestreeError

MIN_GIT = (2, 38)  # `git merge-tree --write-tree`


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    what: str
    ok: bool
    detail: str


# Words a shell runs itself: nothing to look for on PATH.
SHELL_BUILTINS = frozenset(
    {":", ".", "[", "true", "false", "echo", "exit", "cd", "test", "export", "set", "printf"}
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def command_program(command: str) -> str | None:
    """The program a shell command line starts (`FOO=1 tox -e py` → `tox`), or None
    for a shell builtin or a line that cannot be read."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word in words:
        if _ASSIGNMENT.match(word):
            continue
        program = re.split(r"[;&|<>()]", word)[0]
        return None if not program or program in SHELL_BUILTINS else program
    return None


def find_program(program: str, root: Path) -> str | None:
    """Where `program` is: on PATH, or a path (relative ones from the repository root)."""
    if "/" in program:
        path = Path(program) if os.path.isabs(program) else root / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program)


def agent_users(config: Config, scope: str, lanes: dict[str, str] | None = None) -> dict[str, str]:
    """Agent name → who needs it, for a command: `probes` (the probes' agents), `full`
    (and the planner's and the lanes' default agent), `doctor` (and every lane still to
    run, from `lanes`: lane id → agent)."""
    users: dict[str, str] = {}

    def need(agent: str, who: str) -> None:
        users.setdefault(agent, who)

    default = config.defaults.agent
    probing = scope in ("probes", "full", "doctor")
    for probe_id, probe in config.probes.items() if probing else ():
        need("shell" if probe.builtin else probe.agent or default, f"[probes.{probe_id}]")
    if probing and config.defaults.builtin_probes and set(BUILTIN_PROBE_NAMES) - set(config.probes):
        need("shell", "the built-in probes")
    if scope in ("full", "doctor"):
        if config.plan.agent is not None:
            need(config.plan.agent, "[plan] agent")
        need(default, "[defaults] agent, for the plan's lanes")
    for lane_id, agent in (lanes or {}).items():
        need(agent, f"lane {lane_id!r}")
    return users


def program_checks(
    config: Config, root: Path, scope: str, lanes: dict[str, str] | None = None
) -> list[Check]:
    """A row per agent program and per command (verify, setup, tests) the command needs."""
    rows = []
    users = agent_users(config, scope, lanes)
    for name, who in users.items():
        try:
            preset = agents.get_agent(name, config)
        except OrchestreeError as exc:
            rows.append(Check(f"agent {name!r} ({who})", False, str(exc)))
            continue
        found = find_program(preset.executable, root)
        detail = found or f"program {preset.executable!r} not found on PATH; {preset.install_hint}"
        rows.append(Check(f"agent {name!r} ({who})", found is not None, detail))
    if any(name != "shell" for name in users) or scope == "doctor":
        found = shutil.which("python3")
        detail = found or "python3 not found on PATH; agents run the tracker helper with it"
        rows.append(Check("python3 (the tracker helper)", found is not None, detail))
    commands = []
    if scope in ("full", "merge", "doctor") and config.merge.verify:
        commands.append(("[merge] verify", config.merge.verify))
    if scope in ("full", "execute", "probes", "doctor") and config.worktree.setup:
        commands.append(("[worktree] setup", config.worktree.setup))
    if scope in ("full", "probes", "doctor"):
        commands += [(f"[probes.{k}] command", v.command) for k, v in config.probes.items()
                     if v.command]  # fmt: skip
    for what, command in commands:
        program = command_program(command)
        if program is None:
            continue
        found = find_program(program, root)
        rows.append(Check(what, found is not None, found or f"program {program!r} not found"))
    return rows


def tests_probe_checks(config: Config, root: Path) -> list[Check]:
    """The runner the built-in `tests` probe detects must be there (a configured
    `command` is checked as a command instead)."""
    from orchestree.probes.common import find_tool
    from orchestree.probes.testsuite import detect_runner, project_python

    ids = [k for k, v in probe_set(config).items() if v.builtin == "tests" and not v.command]
    if not ids:
        return []
    runner = detect_runner(root, git.ls_files(root))
    if runner is None:
        return []
    if runner == "pytest":
        python = project_python(root)
        found = str(python) if python else find_tool("pytest", own_env=False)
        why = "pytest: no .venv/venv with it and none on PATH (orchestree's own is not used)"
    else:
        found, why = find_tool(runner), f"{runner} not found on PATH"
    fix = f"; install it or set [probes.{ids[0]}] command"
    return [Check(f"[probes.{ids[0]}] runner", found is not None, found or why + fix)]


def executor_checks(config: Config, root: Path) -> list[Check]:
    """The Dask executor needs the optional extra and a remote lanes clone from."""
    if config.executor.kind != "dask":
        return []
    import importlib.util

    has_dask = importlib.util.find_spec("distributed") is not None
    rows = [Check("dask (executor)", has_dask, "installed" if has_dask else
                  "not installed; pip install 'orchestree[dask]'")]  # fmt: skip
    remote = config.executor.remote
    known = git.remote_known(root, remote) or (root / remote).exists() or "://" in remote
    detail = remote if known else (
        f"no remote {remote!r}; add one (`git remote add {remote} URL`) or set "
        "[executor] remote"
    )  # fmt: skip
    rows.append(Check("[executor] remote", known, detail))
    return rows


def sandbox_checks(config: Config, kinds: frozenset[str] = frozenset()) -> list[Check]:
    """A bubblewrap sandbox, configured or asked for by a lane (`kinds`), needs a `bwrap`
    that can create its namespaces here (tried for real), and the local executor."""
    from orchestree import sandbox

    if "bwrap" not in kinds | {config.sandbox.kind}:
        return []
    if config.executor.kind != "local":
        why = f"runs lanes of the local executor only; {sandbox.TURN_OFF} for [executor] dask"
        return [Check("bwrap ([sandbox])", False, why)]
    problem = sandbox.unavailable("bwrap")
    return [Check("bwrap ([sandbox])", problem is None, problem or str(shutil.which("bwrap")))]


def require(
    config: Config,
    root: Path,
    scope: str,
    lanes: dict[str, str] | None = None,
    sandboxes: frozenset[str] = frozenset(),
) -> None:
    """Refuse (exit 3) before anything changes when a program the command needs is
    missing, naming every one in a single line. `sandboxes`: the lanes' own kinds."""
    rows = program_checks(config, root, scope, lanes) + executor_checks(config, root)
    rows += sandbox_checks(config, sandboxes) if scope in ("execute", "full", "probes") else []
    if scope in ("probes", "full"):
        rows += tests_probe_checks(config, root)
    missing = [f"{row.what}: {row.detail}" for row in rows if not row.ok]
    if missing:
        raise EnvironmentRefused(
            f"missing, so nothing was started or changed: {' | '.join(missing)}; "
            "`orchestree doctor` lists everything a run needs"
        )


def diagnose(path: Path) -> list[Check]:
    """Every row of `orchestree doctor`: git, the repository, the config, the programs."""
    rows = []
    cwd = path if path.is_dir() else Path.cwd()
    found = git.version(cwd)
    shown = ".".join(map(str, found)) if found else "git not found"
    rows.append(Check("git ≥ 2.38", found is not None and found[:2] >= MIN_GIT, shown))
    try:
        root = git.repo_root(path.resolve())
    except OrchestreeError as exc:
        return [*rows, Check("repository", False, str(exc))]
    rows.append(Check("repository", True, str(root)))
    try:
        config = load_config(root)
    except OrchestreeError as exc:
        return [*rows, Check(CONFIG_FILE, False, str(exc))]
    exists = (root / CONFIG_FILE).exists()
    rows.append(Check(CONFIG_FILE, True, "valid" if exists else "none (every default)"))
    rows += _state_checks(root, config)
    lanes = _lanes_to_run(root, config)
    rows += program_checks(config, root, "doctor", lanes) + tests_probe_checks(config, root)
    rows += executor_checks(config, root) + sandbox_checks(config)
    if config.executor.kind != "local" and config.worktree.pool:
        from orchestree.worktree_pool import NOT_REMOTE

        rows.append(Check("[worktree] pool", True, NOT_REMOTE))
    rows += share_key_checks(config, root)
    rows.append(Check("python (orchestree's)", True, sys.executable))
    return rows


def share_key_checks(config: Config, root: Path) -> list[Check]:
    """What decides `[worktree] share`'s template (worktree_share.basis): a hint when
    every new base commit rebuilds it; a failure when `share_key` matches no file."""
    worktree, what = config.worktree, "[worktree] share_key"
    if not (worktree.share and worktree.setup):
        return []
    if not worktree.share_key:
        hint = ("unset: share's template is made again on each new base commit (after "
                "every merge); name the lockfiles setup reads to keep it")  # fmt: skip
        return [Check(what, True, hint)]
    base = config.defaults.base_branch or git.current_branch(root)
    head = git.head_commit(root, f"refs/heads/{base}") if base else None
    if head is None:
        return []  # the base branch's row says what is wrong
    files = [line.split(" ", 2)[2] for line in git.files_matching(root, head, worktree.share_key)]
    if not files:
        why = f"matches no file of {base}, so the base commit keys the template, as if unset"
        return [Check(what, False, f"{why}; name the lockfiles setup reads")]
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return [Check(what, True, f"share's template is made again when these change: {shown}")]


def _state_checks(root: Path, config: Config) -> list[Check]:
    base = config.defaults.base_branch or git.current_branch(root)
    if base is None:
        return [Check("base branch", False, "detached HEAD; check out the base branch")]
    if git.head_commit(root, f"refs/heads/{base}") is None:
        return [Check("base branch", False, f"{base!r} has no commits yet; commit first")]
    tracker = root / ".orchestration" / "tracker.json"
    state = "initialised" if tracker.exists() else "not initialised yet (`init` or `full` does it)"
    return [Check("base branch", True, base), Check("orchestree", True, state)]


def _lanes_to_run(root: Path, config: Config) -> dict[str, str]:
    """Lane id → agent, for lanes an `execute` would start (a torn tracker: none)."""
    from orchestree import access_tracker

    path = root / ".orchestration" / "tracker.json"
    if not path.exists():
        return {}
    try:
        data = access_tracker.read(str(path))
    except access_tracker.TrackerFileError:
        return {}
    lanes = data.get("lanes", {}) if isinstance(data, dict) else {}
    return {
        lane_id: str(lane.get("agent") or config.defaults.agent)
        for lane_id, lane in lanes.items()
        if isinstance(lane, dict) and lane.get("status") in ("pending", "running")
    }


def render(rows: list[Check]) -> list[str]:
    """The table: a mark, what, and what was found or what to do."""
    width = max(len(row.what) for row in rows)
    return [f"{'✓' if row.ok else '✗'} {row.what.ljust(width)}  {row.detail}" for row in rows]
