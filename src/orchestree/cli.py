"""The `orchestree` command: parse, print, map errors to exit codes. No logic here.

Heavy modules (pydantic, rich, starlette, the phases) are imported inside the
commands that need them, so `orchestree status --json` starts about as fast as Typer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestree.errors import EXIT_INTERNAL, EXIT_LANES_FAILED, EXIT_USAGE, OrchestreeError

app = typer.Typer(
    name="orchestree",
    help=(
        "Run many coding agents on one git repository: each lane gets its own worktree "
        "and branch, one tracker records everything, finished lanes merge back in "
        "dependency order.\n\n"
        'Example: orchestree init && orchestree add-lane docs \'{"tasks": ["Write docs"]}\''
        " && orchestree execute && orchestree merge"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
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
_DEBUG = {"on": False}


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def _dump_json(data: Any) -> None:
    _out(json.dumps(data, indent=2, ensure_ascii=False))


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _DEBUG["on"] = debug


@app.command()
def init(repo: RepoOpt = Path(".")) -> None:
    """Create .orchestration/ with an empty tracker in this repository. Safe to repeat.

    Example: orchestree init --repo ~/src/myproject
    """
    from orchestree import orchestrator

    result = orchestrator.init(repo)
    tracker = result.repo.layout.tracker
    if result.created:
        _out(f"initialised orchestree in {result.repo.root} (tracker: {tracker})")
    else:
        lanes = len(result.repo.store.read().lanes)
        _out(f"already initialised in {result.repo.root}: {lanes} lane(s) kept ({tracker})")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the tracker as JSON.")] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Show the tracker: phase, lanes and agents.

    Example: orchestree status --json | jq '.lanes | map_values(.status)'
    """
    if as_json:
        from orchestree import access_tracker, git
        from orchestree.errors import TrackerError, UserError

        root = git.repo_root(repo.resolve())
        path = root / ".orchestration" / "tracker.json"
        if not path.exists():
            raise UserError(f"{root} is not initialised; run `orchestree init` there first")
        try:
            _dump_json(access_tracker.read(str(path)))
        except access_tracker.TrackerFileError as exc:
            raise TrackerError(str(exc)) from None
        return
    from orchestree import orchestrator
    from orchestree.report import render_status

    state = orchestrator.open_repo(repo)
    render_status(state.store.read(), state.layout)


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
        bool, typer.Option("--replace", help="Redefine a lane that has not started.")
    ] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Add a lane by hand (the seed's lane JSON), or many at once with --from.

    Fields: name, tasks, priority (high|medium|low), parallel, depends_on, agent,
    timeout_s, max_attempts, results, budget_usd.

    Example: orchestree add-lane docs '{"name": "Docs", "tasks": ["Write the README"],
    "priority": "high", "depends_on": ["api"]}'
    """
    from orchestree import orchestrator
    from orchestree.errors import UserError

    if from_file is not None:
        if lane_id is not None:
            raise UserError("give either <id> <json> or --from FILE, not both")
        try:
            text = sys.stdin.read() if from_file == "-" else Path(from_file).read_text("utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {from_file}: {exc.strerror}") from None
        lanes = orchestrator.parse_lane_json(text, f"--from {from_file}")
    else:
        if lane_id is None or lane_json is None:
            raise UserError("add-lane needs <id> and <json> (or --from FILE); see --help")
        lanes = {lane_id: orchestrator.parse_lane_json(lane_json, f"lane {lane_id!r} JSON")}
    added = orchestrator.add_lanes(orchestrator.open_repo(repo), lanes, replace=replace)
    _out(f"{'replaced' if replace else 'added'} {len(added)} lane(s): {', '.join(added)}")


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    repo: RepoOpt = Path("."),
) -> None:
    """Archive the tracker to .orchestration/archive/ and start a fresh one.

    Example: orchestree reset --yes
    """
    from orchestree import orchestrator

    state = orchestrator.open_repo(repo)
    state.store.read()  # refuse a torn tracker before asking anything
    if not yes and not typer.confirm(
        f"Archive the tracker of {state.root} and start over?", default=False
    ):
        _err("reset cancelled; nothing changed")
        raise typer.Exit(1)
    archived = orchestrator.reset(state)
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
    from orchestree import orchestrator

    _dump_json(orchestrator.tracker_get(orchestrator.open_repo(repo), key_path))


@tracker_app.command("update")
def tracker_update(
    update_json: Annotated[str, typer.Argument(help="A JSON object deep-merged into the tracker.")],
    repo: RepoOpt = Path("."),
) -> None:
    """Deep-merge a JSON update into the tracker under the lock, validated.

    Example: orchestree tracker update '{"lanes": {"docs": {"progress": "50% complete"}}}'
    """
    from orchestree import orchestrator

    changes = orchestrator.parse_lane_json(update_json, "the update")
    orchestrator.open_repo(repo).store.merge(changes, actor="cli")
    _out("tracker updated")


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


def main(argv: list[str] | None = None) -> int:
    click_error, no_args = _parser_errors()
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="orchestree", standalone_mode=False)
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
        _err(f"orchestree: internal error: {exc!r}; run again with --debug for the traceback")
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0
