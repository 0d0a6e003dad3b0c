"""Fake `claude`, `codex`, `gemini` and `aider` for tests: standard library only.

Each fake parses its argv like the real program (an unknown option gets the real
parser's complaint), records argv, stdin, cwd and environment, optionally edits and
commits in its working directory, and prints what the real CLI prints.

Switches (environment):
  FAKE_AGENT_PYTHON    the Python that runs this file (default: python3 on PATH)
  FAKE_AGENT_RECORD    a file to write the record to (JSON), or a folder to write
                       <program>-<lane>.json into
  FAKE_AGENT_MODE      ok (default) | not-logged-in (replays the real CLI's recorded
                       output, tests/agents/data/, and ends as it did) | fail
  FAKE_AGENT_EDIT      a path (relative to the cwd) to write a line to
  FAKE_AGENT_COMMIT    1: `git add -A && git commit` that edit
  FAKE_AGENT_PROGRESS  a text to report as the lane's progress through access_tracker.py
  FAKE_AGENT_SLEEP     seconds to sleep before finishing
  FAKE_AGENT_COST      Claude's total_cost_usd (default 0.0123)
  FAKE_AGENT_TOKENS    "input,output": the tokens Codex's and Gemini's usage report
                       (default 1200,300)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "agents" / "data"

# Per program: options taking a value, flags, options taking several values, and the
# real parser's complaint for anything else.
SPECS: dict[str, tuple[set[str], set[str], set[str], str]] = {
    "claude": (
        {"--permission-mode", "--output-format", "--max-budget-usd", "--model", "--resume"},
        {"-p", "--print", "--verbose"},
        {"--allowedTools", "--allowed-tools"},
        "error: unknown option '{opt}'",
    ),
    "codex": (
        {"--sandbox", "-s", "--model", "-m", "-c", "--config"},
        {"--json", "--skip-git-repo-check"},
        set(),
        "error: unexpected argument '{opt}' found",
    ),
    "gemini": (
        {"-p", "--prompt", "--model", "-m", "--approval-mode", "--output-format", "-o"},
        {"--yolo", "-y"},
        set(),
        "Unknown argument: {opt}",
    ),
    "aider": (
        {"--message", "-m", "--model"},
        {"--yes-always", "--no-gitignore", "--no-check-update", "--no-analytics"},
        set(),
        "aider: error: unrecognized arguments: {opt}",
    ),
}


def parse(program: str, args: list[str]) -> tuple[dict[str, object], list[str]]:
    valued, flags, many, complaint = SPECS[program]
    options: dict[str, object] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional += args[i + 1 :]
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name in valued:
                options[name] = value if eq else args[i + 1]
                i += 1 if eq else 2
                continue
            if name in flags:
                options[name] = True
                i += 1
                continue
            if name in many:
                values = []
                i += 1
                while i < len(args) and not args[i].startswith("-"):
                    values.append(args[i])
                    i += 1
                options[name] = values
                continue
            print(complaint.format(opt=arg), file=sys.stderr)
            sys.exit(2 if program in ("codex", "aider") else 1)
        positional.append(arg)
        i += 1
    return options, positional


def record(program: str, argv: list[str], stdin: str | None) -> None:
    target = os.environ.get("FAKE_AGENT_RECORD")
    if not target:
        return
    path = Path(target)
    if path.is_dir():
        lane = os.environ.get("ORCHESTREE_LANE", str(os.getpid()))
        path = path / f"{program}-{lane}.json"
    try:  # the runner gives agents /dev/null, never an open pipe or a terminal
        devnull = os.path.samestat(os.fstat(0), os.stat(os.devnull))
    except OSError:
        devnull = False
    data = {
        "program": program,
        "argv": argv,
        "stdin": stdin,
        "stdin_is_devnull": devnull,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
    }
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def work(program: str) -> None:
    """What a real agent might do: report progress, edit, commit, take its time."""
    progress = os.environ.get("FAKE_AGENT_PROGRESS")
    tracker = os.environ.get("ORCHESTREE_TRACKER")
    if progress and tracker:
        helper = Path("access_tracker.py")
        if not helper.exists():
            helper = Path(tracker).parent / "access_tracker.py"
        lane = os.environ.get("ORCHESTREE_LANE", "")
        update = json.dumps({"lanes": {lane: {"progress": progress}}})
        subprocess.run(
            [sys.executable, str(helper), tracker, update], check=True, stdout=subprocess.DEVNULL
        )
    edit = os.environ.get("FAKE_AGENT_EDIT")
    if edit:
        target = Path(edit)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(f"edited by fake {program}\n")
        if os.environ.get("FAKE_AGENT_COMMIT") == "1":
            subprocess.run(["git", "add", "--", edit], check=True)
            subprocess.run(
                ["git", "commit", "-q", "-m", f"fake {program}: edit {edit}"], check=True
            )
    time.sleep(float(os.environ.get("FAKE_AGENT_SLEEP", "0")))


def replay(case: str, forever: bool = False) -> None:
    """The real CLI's recorded output and ending, for the not-logged-in mode."""
    sys.stdout.write((DATA / f"{case}.txt").read_text(encoding="utf-8"))
    sys.stdout.flush()
    meta = json.loads((DATA / f"{case}.json").read_text(encoding="utf-8"))
    if meta["exit_code"] is None or forever:  # it waited until it was killed
        while True:
            time.sleep(3600)
    sys.exit(meta["exit_code"])


def claude(options: dict[str, object], mode: str) -> int:
    if mode == "not-logged-in":
        replay("claude-not-logged-in")
    failed = mode == "fail"
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": failed,
        "duration_ms": 1200,
        "num_turns": 3,
        "session_id": str(uuid.uuid4()),
        "result": "API Error: 500 Internal server error"
        if failed
        else "Done: the tasks are complete.",
        "total_cost_usd": float(os.environ.get("FAKE_AGENT_COST", "0.0123")),
        "permission_denials": [],
    }
    print(json.dumps(result))
    return 1 if failed else 0


def tokens() -> tuple[int, int]:
    tokens_in, _, tokens_out = os.environ.get("FAKE_AGENT_TOKENS", "1200,300").partition(",")
    return int(tokens_in), int(tokens_out)


def codex(options: dict[str, object], mode: str) -> int:
    if mode == "not-logged-in":
        replay("codex-no-network")
    events: list[dict[str, object]] = [
        {"type": "thread.started", "thread_id": str(uuid.uuid4())},
        {"type": "turn.started"},
        {
            "type": "item.started",
            "item": {
                "id": "item_0",
                "type": "command_execution",
                "command": "bash -lc ls",
                "status": "in_progress",
            },
        },
    ]
    if mode == "fail":
        events.append({"type": "turn.failed", "error": {"message": "stream error: 500"}})
    else:
        events += [
            {
                "type": "item.completed",
                "item": {
                    "id": "item_1",
                    "type": "agent_message",
                    "text": "Done: the tasks are complete.",
                },
            },
            {
                "type": "turn.completed",
                "usage": {
                    "input_tokens": tokens()[0],
                    "cached_input_tokens": 0,
                    "output_tokens": tokens()[1],
                },
            },
        ]
    for event in events:
        print(json.dumps(event), flush=True)
    return 1 if mode == "fail" else 0


def gemini(options: dict[str, object], mode: str) -> int:
    if options.get("--yolo") or options.get("-y"):
        print(
            "YOLO mode is enabled. All tool calls will be automatically approved.", file=sys.stderr
        )
        if os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") != "true":
            print(
                'Approval mode overridden to "default" because the current folder is not trusted.',
                file=sys.stderr,
            )
    if mode == "not-logged-in":
        replay("gemini-no-key")
    session = str(uuid.uuid4())
    if mode == "fail":
        body = {
            "session_id": session,
            "error": {"type": "Error", "message": "[API Error: 500]", "code": 1},
        }
    else:
        body = {
            "session_id": session,
            "response": "Done: the tasks are complete.",
            # As Gemini CLI 0.61 prints them: per model, its requests and tokens.
            "stats": {
                "models": {
                    str(options.get("--model") or options.get("-m") or "gemini-2.5-pro"): {
                        "api": {"totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 5053},
                        "tokens": {
                            "prompt": tokens()[0],
                            "candidates": tokens()[1],
                            "total": sum(tokens()),
                            "cached": 0,
                            "thoughts": 0,
                            "tool": 0,
                        },
                    }
                },
                "tools": {"totalCalls": 2},
            },
        }
    print(json.dumps(body, indent=2))
    return 1 if mode == "fail" else 0


def aider(options: dict[str, object], mode: str) -> int:
    if mode == "not-logged-in":
        replay(
            "aider-model-no-key" if options.get("--model") else "aider-no-model",
            forever=not options.get("--model"),
        )
    for name in (".aider.chat.history.md", ".aider.input.history"):
        Path(name).write_text(f"# aider history\n{options.get('--message', '')[:40]!s}\n")
    if not options.get("--no-gitignore"):
        with Path(".gitignore").open("a", encoding="utf-8") as fh:
            fh.write(".aider*\n")
    print("Aider v0.86.2")
    print(f"Main model: {options.get('--model', 'gpt-4o')} with diff edit format")
    if mode == "fail":
        print("litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error.")
    return 0  # Aider exits 0 whatever happened


def main(program: str, argv0: str, argv: list[str]) -> None:
    if argv in (["--version"], ["-v"], ["-V"]):
        print(
            {
                "claude": "2.1.197 (Claude Code)",
                "codex": "codex-cli 0.169.0",
                "gemini": "0.61.0",
                "aider": "aider 0.86.2",
            }[program]
        )
        return
    if program == "codex":
        if not argv or argv[0] != "exec":
            print("fake codex: only `codex exec` is faked", file=sys.stderr)
            sys.exit(2)
        options, _ = parse(program, argv[1:])
    else:
        options, _ = parse(program, argv)
    stdin = None if sys.stdin.isatty() else sys.stdin.read()
    record(program, [argv0, *argv], stdin)
    mode = os.environ.get("FAKE_AGENT_MODE", "ok")
    if mode == "ok" or (mode == "fail" and program != "aider"):
        work(program)
    handler = {"claude": claude, "codex": codex, "gemini": gemini, "aider": aider}[program]
    sys.exit(handler(options, mode))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
