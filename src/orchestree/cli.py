"""The `orchestree` command: parse, print, map errors to exit codes. No logic here.

Heavy modules (pydantic, rich, starlette, the phases) are imported inside the
commands that need them, so `orchestree status --json` starts about as fast as Typer.
Unlike the rest of the package, no `from __future__ import annotations`: Typer reads
every command's annotations at each start, and as strings it would compile and
evaluate each of them (some 190 compiles, a fifth of a bare `import typer`).
"""

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestree.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_LANES_FAILED,
    EXIT_USAGE,
    OrchestreeError,
)

_APP_SETTINGS: dict[str, Any] = dict(
    name="orchestree",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(
    **_APP_SETTINGS,
    help=(
        "Run many coding agents on one git repository: each lane gets its own worktree "
        "and branch, one tracker records everything, finished lanes merge back in "
        "dependency order.\n\n"
        'Example: orchestree init && orchestree add-lane docs \'{"tasks": ["Write docs"]}\''
        " && orchestree execute && orchestree merge"
    ),
)
tracker_app = typer.Typer(
    help=(
        "Read or update the tracker directly (what agents do through access_tracker.py).\n\n"
        "Example: orchestree tracker get lanes.docs.status"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(tracker_app, name="tracker")

RepoOpt = Annotated[
    Path,
    typer.Option("--repo", help="The repository (any folder inside it).", show_default=False),
]
# The flags several commands share, declared once: each command's docstring says what
# its JSON holds, and which lanes a screen holds.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print it as JSON.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every lane, even beyond one screen.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Also remove unmerged branches and uncommitted changes.")
]
GroupBy = Annotated[
    str | None,
    typer.Option("--group-by", help="One lane per gap (default), per file, or per probe."),
]
MaxParallel = Annotated[
    int | None,
    typer.Option("--max-parallel", min=1, help="Lanes running at once (default: config)."),
]
Hard = Annotated[
    bool,
    typer.Option(
        "--hard",
        help="When [defaults] budget_usd or deadline is reached, also cancel the running "
        "lanes (their work is kept), not only stop starting new ones.",
    ),
]
_DEBUG = {"on": False}
ADDED_SHOWN = 8  # lane ids `add-lane --from` names; the rest it counts


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def _dump_json(data: Any) -> None:
    _out(json.dumps(data, indent=2, ensure_ascii=False))


def _show_version(wanted: bool) -> None:
    if wanted:
        from orchestree import __version__

        _out(f"orchestree {__version__}")
        raise typer.Exit(0)


# What an agent may run from inside its lane (docs/trust.md): the views, and `tracker`,
# whose updates are bound to its own lane's progress, data and results. `radar` only
# prints when an agent runs it; `diff` only reads.
_AGENT_COMMANDS = frozenset({"status", "tracker", "logs", "monitor", "doctor", "radar", "diff"})


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    _DEBUG["on"] = debug
    _refuse_inside_a_lane(ctx.invoked_subcommand)


def _refuse_inside_a_lane(command: str | None) -> None:
    """An agent (ORCHESTREE_LANE is in its environment) cannot change the run it is part
    of: add a lane, run, merge, cancel or reset (docs/trust.md)."""
    import os

    lane = os.environ.get("ORCHESTREE_LANE")
    if lane and command is not None and command not in _AGENT_COMMANDS:
        from orchestree.errors import UserError

        raise UserError(
            f"`orchestree {command}` changes the run, and this is lane {lane!r}'s agent "
            "(ORCHESTREE_LANE is set); an agent may change only its own lane's progress, "
            "data and results (`orchestree tracker update`); nothing was changed"
        )


@app.command()
def init(repo: RepoOpt = Path(".")) -> None:
    """Create .orchestration/ with an empty tracker in this repository. Safe to repeat.

    Example: orchestree init --repo ~/src/myproject
    """
    from orchestree import initrepo

    fresh = initrepo.init_fresh(repo)  # the common first run, without pydantic
    if fresh is not None:
        _out(f"initialised orchestree in {fresh.root} (tracker: {fresh.tracker})")
        return
    from orchestree.repo import init_repo

    result = init_repo(repo)
    tracker = result.repo.layout.tracker
    if result.created:
        _out(f"initialised orchestree in {result.repo.root} (tracker: {tracker})")
    else:
        lanes = len(result.repo.store.read().lanes)
        _out(f"already initialised in {result.repo.root}: {lanes} lane(s) kept ({tracker})")


@app.command()
def status(
    as_json: JsonOpt = False,
    show_all: AllOpt = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Show the tracker: phase, lanes and agents.

    When the lanes do not fit one screen, it counts them by status, lists the running,
    failing and stuck ones first and folds the rest into one line; --all lists them all.

    Example: orchestree status --json | jq '.lanes | map_values(.status)'
    """
    from orchestree import fastpath, statusview

    where = fastpath.locate(repo)
    data = None if where is None else fastpath.read(where.layout)
    if where is None or data is None:  # a config or a tracker to validate: the full path
        from orchestree.repo import open_repo

        state = open_repo(repo)
        where = fastpath.Where(state.layout, state.config.defaults.agent)
        state.store.read()  # refuses an invalid tracker, naming the field
        data = state.store.read_raw()
    if as_json:
        _dump_json(data)
        return
    statusview.render(data, str(where.layout.root), where.agent, show_all)


@app.command()
def doctor(repo: RepoOpt = Path(".")) -> int:
    """Check everything a run needs, change nothing, and print it as a table.

    git (2.38 or newer), the repository and its base branch, orchestree.toml, every
    agent program the probes, the plan and the pending lanes would start, python3 for
    the tracker helper, the [merge] verify, [worktree] setup and probe commands, the
    test runner the tests probe would use, and for the Dask executor its extra and
    remote. Exit 0 when all is there, 3 when
    something is missing (each row says what to do).

    Example: orchestree doctor && orchestree full
    """
    from orchestree import doctor as checks

    rows = checks.diagnose(repo)
    for line in checks.render(rows):
        _out(line)
    missing = sum(not row.ok for row in rows)
    _out(
        f"{missing} missing; fix the rows marked ✗" if missing else "everything a run needs is here"
    )
    return EXIT_ENVIRONMENT if missing else 0


# An id such as `-bad` is not an option: let it through to the id check, which names it.
@app.command("add-lane", context_settings={"ignore_unknown_options": True})
def add_lane(
    lane_id: Annotated[str | None, typer.Argument(help="The lane id, e.g. db-projection.")] = None,
    lane_json: Annotated[
        str | None, typer.Argument(help="The lane as JSON: name, tasks, priority, ...")
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option("--from", help="A JSON object of id -> lane; '-' reads stdin."),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Redefine a lane that has not started, or run a merged lane again afresh.",
        ),
    ] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Add a lane by hand (the seed's lane JSON), or many at once with --from.

    --from takes an object of id -> lane, or a plan file ({"lanes": {id: lane}}).

    Fields: name, tasks, priority (high|medium|low), parallel, depends_on, agent,
    timeout_s, max_attempts, results, budget_usd.

    Example: orchestree add-lane docs '{"name": "Docs", "tasks": ["Write the README"],
    "priority": "high", "depends_on": ["api"]}'
    """
    from orchestree import fastpath, newlanes
    from orchestree.errors import UserError

    if from_file is not None:
        if lane_id is not None:
            raise UserError("give either <id> <json> or --from FILE, not both")
        try:
            text = sys.stdin.read() if from_file == "-" else Path(from_file).read_text("utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {from_file}: {exc.strerror}") from None
        lanes = fastpath.parse_lane_json(text, f"--from {from_file}")
        if newlanes.is_plan_shape(lanes):  # a plan file (`plan --from`'s shape) works too
            lanes = lanes["lanes"]
    else:
        if lane_id is None or lane_json is None:
            raise UserError("add-lane needs <id> and <json> (or --from FILE); see --help")
        lanes = {lane_id: fastpath.parse_lane_json(lane_json, f"lane {lane_id!r} JSON")}
    added = newlanes.add(repo, lanes, replace)  # None: the models validate and add them
    if added is None:
        from orchestree import lane_ops
        from orchestree.repo import open_repo

        added = lane_ops.add_lanes(open_repo(repo), lanes, replace=replace)
    # Hundreds of ids on one line tell nothing: the count, and the first few.
    more = f" and {len(added) - ADDED_SHOWN} more" if len(added) > ADDED_SHOWN else ""
    shown = ", ".join(added[:ADDED_SHOWN]) + more
    _out(f"{'replaced' if replace else 'added'} {len(added)} lane(s): {shown}")


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: ForceOpt = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Clean up (as `cleanup`), archive the tracker to .orchestration/archive/, start afresh.

    Unmerged lane branches and worktrees with uncommitted changes are kept unless --force.

    Example: orchestree reset --yes
    """
    from orchestree.repo import open_repo

    state = open_repo(repo)
    state.store.read()  # refuse a torn tracker before asking anything
    if not yes and not typer.confirm(
        f"Archive the tracker of {state.root} and start over?", default=False
    ):
        _err("reset cancelled; nothing changed")
        raise typer.Exit(1)
    from orchestree.cleanup import reset as reset_repo

    archived = reset_repo(state, force=force, say=_out)
    _out(f"tracker archived to {archived}; a fresh tracker is in place")


@tracker_app.command("get")
def tracker_get(
    key_path: Annotated[
        str | None, typer.Argument(help="A dotted path, e.g. lanes.docs.status.")
    ] = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Print the tracker, or one value of it, as JSON.

    Example: orchestree tracker get lanes.docs.progress
    """
    from orchestree import fastpath

    done, value = fastpath.tracker_get(repo, key_path)
    if not done:  # an orchestree.toml to validate first
        from orchestree.repo import open_run_repo

        value = open_run_repo(repo)[0].store.get(key_path)
    _dump_json(value)


@tracker_app.command("update")
def tracker_update(
    update_json: Annotated[str, typer.Argument(help="A JSON object deep-merged into the tracker.")],
    repo: RepoOpt = Path("."),
) -> None:
    """Deep-merge a JSON update into the tracker under the lock, validated.

    It never creates a lane (add-lane and plan do). Inside a lane's worktree, or with
    ORCHESTREE_LANE set, only that lane's progress, data and results may change.

    Example: orchestree tracker update '{"lanes": {"docs": {"progress": "50% complete"}}}'
    """
    from orchestree import fastpath

    changes = fastpath.parse_lane_json(update_json, "the update")
    if fastpath.tracker_update(repo, changes):  # lanes' progress, data, results: no models
        _out("tracker updated")
        return
    from orchestree.repo import open_run_repo

    state, lane = open_run_repo(repo)
    state.store.merge(changes, actor="cli" if lane is None else f"agent-{lane}", lane=lane)
    _out("tracker updated")


@contextlib.contextmanager
def _steps(label: str) -> Iterator[Callable[[str], None]]:
    """A live line naming the running step and its time on a TTY; else plain lines."""
    from orchestree.report import StepProgress, plain

    if not sys.stdout.isatty():
        yield plain
        return
    with StepProgress(label) as live:
        yield live


@contextlib.contextmanager
def _notifying(state: Any, command: str, report: Callable[[str], None]) -> Iterator[None]:
    """[notify]'s watcher around a command that runs lanes or merges (notify.py)."""
    from orchestree import notify

    with notify.watching(state.store, state.config.notify, command, report):
        yield


@contextlib.contextmanager
def _progress(state: Any, kind: str | None = "lane") -> Iterator[Callable[[str], None]]:
    """A live progress line on a TTY; one plain line per state change otherwise."""
    from orchestree.report import LiveProgress, plain

    if not sys.stdout.isatty():
        yield plain
        return

    with LiveProgress(state.store.read, kind) as live:
        yield live


@app.command()
def execute(
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", min=1, help="Lanes running at once (default: config)."),
    ] = None,
    hard: Hard = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Run every pending lane: dependencies first, independent lanes side by side.

    Resumable: run it again after a crash and finished lanes stay done.
    Exit 0 when every lane completed, 1 when one failed or was blocked, or when
    [defaults] budget_usd or deadline was reached before every lane could start.

    Example: orchestree execute --max-parallel 2
    """
    from orchestree import fastpath

    if fastpath.nothing_to_execute(repo):  # no lane: decided without the models
        _out(f"note: {fastpath.NO_LANES_TO_RUN}")
        return
    from orchestree import execution
    from orchestree.repo import open_repo

    state = open_repo(repo)
    # The same answer once validated; edits of tracker.json the run names go on to it.
    if not state.store.read().lanes and not state.store.take_edits():
        _out(f"note: {fastpath.NO_LANES_TO_RUN}")
        return
    with _progress(state) as report, _notifying(state, "execute", report):
        summary = execution.execute(state, None, max_parallel, report, hard=hard)
    _finish_run(summary, state)


@app.command("exec-lane")
def exec_lane(
    lane_id: Annotated[str, typer.Argument(help="The lane to run now.")],
    repo: RepoOpt = Path("."),
) -> None:
    """Run one lane now (its dependencies must have completed).

    Example: orchestree exec-lane db-projection
    """
    from orchestree import lane_ops
    from orchestree.repo import open_repo

    state = open_repo(repo)
    lane_ops.require_ready(state, lane_id)
    _run_lane(state, lane_id, "exec-lane")


@app.command()
def retry(
    lane_id: Annotated[
        str, typer.Argument(help="A failed, cancelled, blocked, conflicted or verify_failed lane.")
    ],
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Only mark it pending; run it later.")
    ] = False,
    keep_base: Annotated[
        bool,
        typer.Option(
            "--keep-base", help="Continue on its branch from its old start point, not afresh."
        ),
    ] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Give a failed, cancelled, blocked or conflicted lane another attempt, and run it.

    Lanes blocked only because of it become pending again. A conflicted lane, or one
    the base branch has moved past, starts over from the current base (with its
    dependencies); its earlier head is kept under refs/orchestree/attempts/<lane>/<n>.
    --keep-base continues on its branch instead.

    Example: orchestree retry db-projection
    """
    from orchestree import lane_ops
    from orchestree.repo import open_repo

    state = open_repo(repo)
    done = lane_ops.retry_lane(state, lane_id, keep_base=keep_base)
    freed = done.freed
    how = f"; starts from the current base (earlier work kept at {done.kept})" if done.kept else (
        "; starts from the current base" if done.fresh else ""
    )  # fmt: skip
    _out(f"{lane_id} is pending again{how}" + (f"; unblocked: {', '.join(freed)}" if freed else ""))
    if not no_run:
        _run_lane(state, lane_id, "retry")


@app.command("rework")
def rework_(
    lane_id: Annotated[
        str, typer.Argument(help="A completed, conflict or verify_failed lane, not merged.")
    ],
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="The review comments.", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A file holding the review comments.", show_default=False),
    ] = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Send review comments back to a lane's agent: a new attempt that acts on them.

    For a lane that is completed, conflict or verify_failed and not merged. The agent
    gets ORCHESTREE_REWORK=review, the comments in the JSON file ORCHESTREE_REWORK_FILE
    names and in its prompt, and resumes its session where its CLI can. Its new
    commits go on the lane's branch; the earlier head stays at
    refs/orchestree/attempts/<lane>/<n>. Exit 0 when the attempt completes, 1 when it
    fails. Read the lane's change first with `orchestree diff <lane>`.

    Example: orchestree rework db-projection --file review.md
    """
    from orchestree import review
    from orchestree.repo import open_repo

    comments = review.comments_from(message, file)
    state = open_repo(repo)
    details = review.send_back(state, lane_id, comments)
    _out(f"↻ {lane_id}: review rework {details.count}; its agent starts on the comments")
    with _progress(state) as report:
        summary = review.run(state, lane_id, report)
    _finish_run(summary, state)


@app.command()
def cancel(
    lane_id: Annotated[str, typer.Argument(help="A pending or running lane.")],
    repo: RepoOpt = Path("."),
) -> None:
    """Cancel a lane: a running agent is stopped (its worktree is kept).

    Example: orchestree cancel db-projection
    """
    from orchestree import lane_ops
    from orchestree.repo import open_repo

    _out(lane_ops.cancel_lane(open_repo(repo), lane_id))


@app.command()
def logs(
    lane_id: Annotated[str, typer.Argument(help="The lane whose agent log to show.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing while the lane runs.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Print the log's bytes as they are, escape sequences too."),
    ] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Print a lane's agent log (stdout and stderr of every attempt).

    Control characters the agent wrote (escape sequences, carriage returns) are shown
    as text, such as \\x1b; --raw prints them as they are.

    Example: orchestree logs db-projection --follow
    """
    from orchestree import lane_ops
    from orchestree.repo import open_repo

    lane_ops.show_log(open_repo(repo), lane_id, follow, sys.stdout, raw=raw)


def _kind(state: Any, lane_id: str) -> str:
    return str(state.store.read().lanes[lane_id].kind)


def _run_lane(state: Any, lane_id: str, command: str) -> None:
    """Run one lane now, with the progress line of its kind (a probe's or a lane's), and
    `[notify]` told of what `command` changed."""
    from orchestree import execution

    kind = _kind(state, lane_id)
    with _progress(state, kind) as report, _notifying(state, command, report):
        summary = execution.execute(state, {lane_id}, None, report, kind=kind)
    _finish_run(summary, state)


def _finish_run(summary: Any, state: Any) -> None:
    from orchestree.report import outcome, tally
    from orchestree.visible import visible

    for message in summary.held.values():
        _err(visible(f"held: {message}"))
    if summary.stopped:
        _err(f"{summary.stopped}: lanes left pending; raise the limit in orchestree.toml "
             "and run `orchestree execute` again")  # fmt: skip
    lanes = state.store.read().lanes
    outcomes = [outcome(lanes[k]) if k in lanes else s for k, s in summary.statuses.items()]
    if outcomes:
        _out(tally(outcomes))  # e.g. "3 lanes: 1 completed, 2 changed nothing"
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
def probes(max_parallel: MaxParallel = None, repo: RepoOpt = Path(".")) -> None:
    """Run the probes in parallel worktrees, then merge their results into the base branch.

    The built-in inventory, markers, tests and lint run, plus each [probes.<id>] of
    orchestree.toml ([defaults] builtin_probes = false: only those); the first line
    says which run and why. Each writes docs/_generated/<id>/state_probe.json and
    state_probe.md; invalid output fails that probe and the others go on. A probe
    whose results did not change commits nothing.

    Example: orchestree probes && cat docs/_generated/markers/state_probe.md
    """
    from orchestree import pipeline
    from orchestree.repo import open_repo

    state = open_repo(repo)
    with _progress(state, "probe") as report:
        result = pipeline.run_probes(state, max_parallel, report)
    from orchestree.visible import visible

    for probe_id, why in result.failed.items():
        _err(visible(f"probe {probe_id} failed: {why}", keep="\n\t"))  # an agent's words
    if result.run.interrupted:
        raise typer.Exit(130)
    if result.failed or (result.merge is not None and result.merge.exit_code):
        raise typer.Exit(1)


@app.command()
def plan(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; register nothing.")
    ] = False,
    as_json: JsonOpt = False,
    group_by: GroupBy = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", help="Register this plan file, or add-lane's JSON.")
    ] = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Turn the probes' gaps into lanes and write docs/_generated/execution_plan.json.

    One lane per gap; lanes whose paths overlap are ordered (higher priority first),
    lanes that share no path are independent. With [plan] agent in orchestree.toml, that
    agent writes the plan instead (run as a probe lane); it is validated the same way.
    --from registers a plan file (e.g. one edited by hand), or an object of id -> lane
    as add-lane --from takes, instead of planning.

    Example: orchestree plan --dry-run
    """
    from orchestree import pipeline, planner
    from orchestree.repo import open_repo
    from orchestree.report import plan_lines

    state = open_repo(repo)
    if from_file is not None:
        made, where = planner.read_plan(from_file), str(from_file)
        pipeline.check_plan(state, made, where)
    else:
        # A planner agent's progress; on stderr with --json, whose stdout is the plan.
        shown = contextlib.nullcontext(_err) if as_json else _progress(state, "probe")
        with shown as report:
            made, where = pipeline.plan_lanes(state, group_by, report), "the plan"
    added = [] if dry_run else pipeline.register_plan(state, made, where)
    if as_json:
        _dump_json(made.model_dump(mode="json", exclude_defaults=True))
        return
    if dry_run:
        _out(f"plan (dry run; nothing registered): {len(made.lanes)} lane(s)")
    else:
        _out(f"plan: {len(made.lanes)} lane(s), {len(added)} registered; written to "
             f"{state.layout.plan_file}")  # fmt: skip
    for line in plan_lines(made):
        _out(line)


@app.command()
def full(
    max_parallel: MaxParallel = None,
    group_by: GroupBy = None,
    hard: Hard = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Run everything: init if needed, probes, plan, execute, merge, then a summary.

    Exit 0 when every lane merged; 1 when a probe or lane failed, was blocked or
    conflicted (the summary says which and why).

    Example: orchestree full --max-parallel 2
    """
    from orchestree import pipeline
    from orchestree.repo import open_repo
    from orchestree.report import render_summary

    state = open_repo(repo, must_exist=False)
    with _progress(state, None) as report, _notifying(state, "full", report):
        state, result = pipeline.full(repo, max_parallel, report, group_by, hard=hard)
    render_summary(state.store.read(), state.layout)
    raise typer.Exit(result.exit_code)


@app.command()
def merge(
    lane: Annotated[
        str | None, typer.Option("--lane", help="Merge only this lane.", show_default=False)
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Predict each lane's outcome; change nothing."),
    ] = False,
    as_json: JsonOpt = False,
    no_rework: Annotated[
        bool, typer.Option("--no-rework", help="Only report conflicts and verify failures.")
    ] = False,
    repo: RepoOpt = Path("."),
) -> int:
    """Merge completed lanes into the base branch: dependencies first, then priority.

    Every merge is computed in memory on top of the previous one; a conflicting lane is
    recorded with its files and its dependents are skipped; with [merge] verify set,
    a lane whose merge fails it is dropped. The base branch then moves once, by
    fast-forward. Exit 1 when some lane conflicted, failed verify or was skipped, and
    while a lane of an earlier run is still conflicted, failed or blocked (running merge
    again does not make that go away). On a terminal a live line names the lane, the
    step (merging, verifying) and its time; in a pipe each lane gets its line as it is
    decided. --check runs the same computation (verify included) and publishes nothing.
    With [merge] batch = N (default 8) one verify run checks up to N lanes at once and
    a failing run is bisected to the lane that breaks it. --json prints the base's old
    and new commit and each lane's status, commit, conflicts and verify output tail.

    With [merge] on_conflict = "rework" (or "rerun") and on_verify_fail = "rework", a
    lane that conflicts or fails verify goes back to its agent, and merge goes on,
    merging and reworking, until every lane is merged or has used [merge] max_rework;
    --check then also names the lanes that would go to rework. --no-rework only
    reports, whatever [merge] on_conflict and on_verify_fail say.

    Example: orchestree merge --check && orchestree merge
    """
    from orchestree import fastpath

    if lane is None and not as_json and fastpath.nothing_to_merge(repo, check):
        _out(f"note: {fastpath.NO_LANES_TO_MERGE}")  # what the full path says of no lanes
        return 0
    from orchestree import rework
    from orchestree.merge import merger, results
    from orchestree.repo import open_repo

    state = open_repo(repo)
    scope = results.MergeScope(lane, check=check)
    if as_json:  # the same queue, rework included, told nothing on the way
        with _notifying(state, "merge", _err) if not check else contextlib.nullcontext():
            report = rework.merge_until_done(
                state, scope, rework=not no_rework, report=lambda _: None
            )
        _dump_json(results.as_json(report))
        return report.exit_code
    with (
        _steps("merge --check" if check else "merge") as say,
        _notifying(state, "merge", say) if not check else contextlib.nullcontext(),
    ):
        watch = merger.ReportWatch(say, check=check)
        report = rework.merge_until_done(state, scope, watch, rework=not no_rework, report=say)
    for line in merger.describe(report, lanes=False):
        _out(line)
    return report.exit_code


@app.command("radar")
def radar_(
    as_json: JsonOpt = False,
    repo: RepoOpt = Path("."),
) -> int:
    """Predict which lanes' work would conflict: every pair, and each with the base branch.

    Compares committed lane heads and the files in running lanes' worktrees, read
    without touching those worktrees, their index or branch. Only lanes whose changed
    files overlap get a `git merge-tree`: textual conflicts only, so two lanes changing
    different lines of one file raise nothing. The findings go into the tracker
    (`radar`), shown by `status` and both monitors and readable by agents through their
    helper; run by an agent, it only prints. `execute` looks every [radar] every_s
    seconds by itself. Exit 1 when a conflict is predicted.

    Example: orchestree radar --json | jq '.findings'
    """
    import os

    from orchestree.merge import radar
    from orchestree.repo import open_repo

    state = open_repo(repo)
    found = radar.scan(state.layout, state.store.read())
    if not os.environ.get("ORCHESTREE_LANE"):
        radar.record(state.store, found.findings)
    if as_json:
        _dump_json(radar.as_json(found))
    else:
        for line in radar.describe_scan(found):
            _out(line)
    return 1 if found.findings else 0


@app.command("diff")
def diff_(
    lane_id: Annotated[str, typer.Argument(help="The lane whose change to show.")],
    stat: Annotated[bool, typer.Option("--stat", help="Only the files and their counts.")] = False,
    name_only: Annotated[
        bool, typer.Option("--name-only", help="Only the names of the changed files.")
    ] = False,
    as_json: JsonOpt = False,
    repo: RepoOpt = Path("."),
) -> int:
    """Show what a lane changed, from where it started, its uncommitted work included.

    The start is the lane's merge base with the base branch, or, for a lane that
    depends on others, the commit it started from (their work is not its change). The
    files in a lane's worktree are read without touching it, its index or its branch.
    On a terminal git's pager and colours are used; piped, plain text. --json prints
    the start, the head, each file's added and removed lines and the patch (cut at
    2 MB, then "truncated" is true).

    Example: orchestree diff db-projection --stat
    """
    from orchestree import lanediff
    from orchestree.errors import UserError
    from orchestree.repo import open_repo

    if stat + name_only + as_json > 1:
        raise UserError("--stat, --name-only and --json are different views; pick one")
    state = open_repo(repo)
    tracker = state.store.read()
    if as_json:
        _dump_json(lanediff.lane_diff(state.layout, tracker, lane_id).as_json())
        return 0
    ends = lanediff.sides(state.layout, tracker, lane_id)
    if ends.uncommitted:
        _err(f"note: lane {lane_id}'s diff includes work not committed yet in its worktree")
    view = "stat" if stat else "names" if name_only else "patch"
    if sys.stdout.isatty():
        return 0 if lanediff.to_terminal(state.root, ends, view) == 0 else 1
    sys.stdout.write(lanediff.as_text(state.root, ends, view))
    return 0


@app.command()
def cleanup(
    force: ForceOpt = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Remove lane worktrees and merged lane branches; keep unmerged work unless --force.

    Worktrees deleted by hand are unregistered. A worktree with uncommitted changes and
    a lane branch not merged into the base branch are kept and named, with how to merge
    or delete them. --force removes them too, saying what it removes first.

    Example: orchestree cleanup
    """
    from orchestree.cleanup import cleanup as run_cleanup
    from orchestree.repo import open_repo

    state = open_repo(repo)
    with _steps("cleanup") as say:
        step = getattr(say, "step", None)
        done = run_cleanup(state, force=force, say=say, step=step, tell=say)
    for line in done.lines(told=True):
        _out(line)


@app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    show_all: AllOpt = False,
    web: Annotated[bool, typer.Option("--web", help="Serve the web dashboard instead.")] = False,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address for --web (default 127.0.0.1).", show_default=False),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port for --web (default 5555).", show_default=False),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between console refreshes.")
    ] = 1.0,
    repo: RepoOpt = Path("."),
) -> int:
    """Watch the tracker live: a console view, or a web dashboard with --web.

    Both only read the tracker. The console quits on q or Ctrl-C; without a TTY it
    prints plain text. The dashboard binds 127.0.0.1:5555 unless told otherwise and
    has a JSON twin at /api/status. --once prints one frame that fits one screen, the
    lanes that need a look first; --once --all prints every lane.

    Example: orchestree monitor --web --port 5555
    """
    from orchestree.monitor import run_monitor
    from orchestree.repo import open_repo

    root = open_repo(repo).root
    return run_monitor(
        root, web=web, once=once, interval=interval, host=host, port=port, show_all=show_all
    )


def _parser_errors() -> tuple[type[Exception], type[Exception]]:
    """Typer's click exception types: its vendored copy (typer >= 0.26) or the click package.

    `typer.BadParameter` lives in whichever module holds them, in every typer version.
    """
    import importlib

    module = importlib.import_module(typer.BadParameter.__module__)
    no_args: type[Exception] = getattr(module, "NoArgsIsHelpError", LookupError)
    return module.ClickException, no_args


def _usage_error(exc: Exception, no_args: type[Exception]) -> int:
    message = exc.format_message()  # type: ignore[attr-defined]
    if isinstance(exc, no_args):  # a group called without a command: its help
        _err(message)
        return EXIT_USAGE
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "orchestree"
    _err(f"orchestree: {message.rstrip('.')}; see `{command} --help`")
    return EXIT_USAGE


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command `args` names. Typer builds the parameters of every
    command it holds at each start, and a call needs one. With no command first (the
    program's own help, an option), or a name that is no command: the whole app, which
    lists the commands or suggests the near ones."""
    name = args[0] if args else "-"
    one = typer.Typer(**_APP_SETTINGS)
    one.registered_callback = app.registered_callback
    one.registered_commands = [
        info
        for info in app.registered_commands
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name  # type: ignore[union-attr]
    ]
    one.registered_groups = [group for group in app.registered_groups if group.name == name]
    return one if one.registered_commands or one.registered_groups else app


def main(argv: list[str] | None = None) -> int:
    click_error, no_args = _parser_errors()
    args = sys.argv[1:] if argv is None else argv
    try:
        result = _app_for(args)(args=args, prog_name="orchestree", standalone_mode=False)
    except OrchestreeError as exc:
        if _DEBUG["on"]:
            raise
        _err(f"orchestree: {exc}")
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except click_error as exc:
        return _usage_error(exc, no_args)
    except typer.Abort:
        _err("orchestree: no answer; nothing changed")
        return EXIT_LANES_FAILED
    except KeyboardInterrupt:
        _err("orchestree: interrupted")
        return 130
    except Exception as exc:
        if _DEBUG["on"]:
            raise
        from orchestree import disk

        if isinstance(exc, OSError) and disk.is_disk_error(exc):  # outside the tracker's writes
            _err(f"orchestree: {disk.describe(exc)}")
            return EXIT_ENVIRONMENT
        _err(f"orchestree: internal error: {exc!r}; run again with --debug for the traceback")
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0
