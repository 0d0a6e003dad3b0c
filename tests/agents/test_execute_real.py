"""The real Claude Code, Codex, Gemini and Aider CLIs run by `orchestree execute` itself
(issue 9, must show 1-3): no login, no key, no network, as a new user meets them.
Run by `make test-agents` only."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import harness
import pytest

from orchestree.agents import PARSER_COMPLAINT
from orchestree.agents.aider import NO_MODEL
from orchestree.agents.claude import Claude

CONFIG = """\
[defaults]
max_parallel = 4
max_attempts = 2
kill_grace_s = 2

[agents.aider]
model = "gpt-4o"
"""
CODEX_TIMEOUT_S = 20  # Codex waits for the network for ever: only this ends it
LANES: dict[str, dict[str, Any]] = {
    "claude-lane": {"agent": "claude", "timeout_s": 30},
    # One attempt: a retry would only wait for the network again.
    "codex-lane": {"agent": "codex", "timeout_s": CODEX_TIMEOUT_S, "max_attempts": 1},
    "gemini-lane": {"agent": "gemini", "timeout_s": 60},
    "aider-lane": {"agent": "aider", "timeout_s": 60},
}
# What each CLI itself says, as recorded in tests/agents/data/.
SAYS = {
    "claude-lane": r"Not logged in · Please run /login",
    "codex-lane": rf"timed out after {CODEX_TIMEOUT_S} s: Reconnecting\.\.\. waiting for network",
    "gemini-lane": r"Please set an Auth method in your .*GEMINI_API_KEY",
    "aider-lane": r"litellm\.AuthenticationError: .*OPENAI_API_KEY",
}


def lane(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"{spec['agent']} lane", "tasks": harness.TASKS, **spec}


@dataclass
class Executed:
    project: harness.Project
    code: int
    out: str
    err: str
    progress: dict[str, list[str]]  # lane -> its progress texts seen while it ran
    tracker: dict[str, Any]


def execute(project: harness.Project, *args: str) -> Executed:
    """`orchestree execute ARGS`, the tracker polled while it runs."""
    proc = project.spawn("execute", *args)
    seen: dict[str, list[str]] = {}
    while proc.poll() is None:
        for lane_id, entry in project.tracker()["lanes"].items():  # replaced whole, never torn
            text = entry.get("progress")
            if entry["status"] == "running" and text and text not in seen.get(lane_id, []):
                seen.setdefault(lane_id, []).append(text)
        time.sleep(0.2)
    out, err = proc.communicate()
    return Executed(project, proc.returncode, out, err, seen, project.tracker())


@pytest.fixture(scope="module")
def four() -> Iterator[Executed]:
    with harness.project(CONFIG, {k: lane(v) for k, v in LANES.items()}) as project:
        yield execute(project)


def seconds(entry: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(entry[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def test_each_cli_fails_within_its_timeout_with_its_own_message(four: Executed) -> None:
    assert four.code == 1, four.out + four.err
    lanes = four.tracker["lanes"]
    assert [k for k, v in lanes.items() if v["status"] == "completed"] == []
    for lane_id, spec in LANES.items():
        entry = lanes[lane_id]
        assert (entry["status"], entry["attempts"]) == ("failed", 1), entry
        assert re.match(SAYS[lane_id], entry["error"]), entry["error"]
        assert seconds(entry) < spec["timeout_s"] + 5
        assert f"✗ {lane_id}: failed: {entry['error']}" in four.out
    assert "completed" not in four.out


def test_no_cli_complains_about_its_arguments_and_gemini_trusts_the_worktree(
    four: Executed,
) -> None:
    for lane_id in LANES:
        log = four.project.log(lane_id)
        assert PARSER_COMPLAINT.search(log) is None, log
    gemini = four.project.log("gemini-lane")
    assert "YOLO mode is enabled" in gemini
    assert "not trusted" not in gemini


def test_codex_shows_it_waits_for_the_network_until_its_timeout(four: Executed) -> None:
    assert "waiting for network" in four.progress.get("codex-lane", []), four.progress
    entry = four.tracker["lanes"]["codex-lane"]
    assert seconds(entry) >= CODEX_TIMEOUT_S
    assert "orchestree: ending the agent (timeout)" in four.project.log("codex-lane")


def test_auth_failures_end_with_one_message_per_agent(four: Executed) -> None:
    held = [line for line in four.err.splitlines() if line.startswith("held: ")]
    agents = [re.sub(r"held: agent '(\w+)'.*", r"\1", line) for line in held]
    assert sorted(agents) == ["aider", "claude", "gemini"], four.err


def test_aider_exits_0_yet_fails_and_leaves_nothing_on_its_branch(four: Executed) -> None:
    project = four.project
    assert four.tracker["agents"]["agent-aider-lane"]["exit_code"] == 0
    assert four.tracker["lanes"]["aider-lane"]["status"] == "failed"
    # It did leave its files in the worktree (and made no .gitignore there) ...
    worktree = project.repo / ".worktrees" / "agent-aider-lane"
    assert (worktree / ".aider.chat.history.md").exists()
    assert not (worktree / ".gitignore").exists()
    # ... but none of it reached the lane's branch.
    assert project.git("rev-parse", "lane-aider-lane") == project.git("rev-parse", "main")
    tree = project.git("ls-tree", "-r", "--name-only", "lane-aider-lane").split()
    assert sorted(tree) == ["README.md", "orchestree.toml"]
    assert four.tracker["lanes"]["aider-lane"]["changed_files"] == []


def test_three_claude_lanes_not_logged_in_fail_once_and_hold_the_rest() -> None:
    lanes = {f"claude-{n}": lane({"agent": "claude", "timeout_s": 30}) for n in (1, 2, 3)}
    with harness.project(CONFIG, lanes) as project:
        run = execute(project, "--max-parallel", "1")
        status = project.run("status")
        logs = sorted(p.name for p in (project.repo / ".orchestration" / "logs").iterdir())
        attempts = project.log("claude-1").count("--- orchestree: lane claude-1 attempt")
    assert run.code == 1
    said = "Not logged in · Please run /login"
    why = f"held: agent 'claude' is not logged in ({said}); {Claude.login}"
    assert run.err.splitlines() == [why]
    entries = run.tracker["lanes"]
    assert (entries["claude-1"]["status"], entries["claude-1"]["attempts"]) == ("failed", 1)
    assert entries["claude-1"]["error"] == said
    for other in ("claude-2", "claude-3"):
        assert (entries[other]["status"], entries[other]["attempts"]) == ("blocked", 0)
        assert entries[other]["held"] == "claude"  # a field, not a prefix of the error
        assert f"held: {entries[other]['error']}" == why
    # The two never started: no agent, no log; the first ran once.
    assert sorted(run.tracker["agents"]) == ["agent-claude-1"]
    assert logs == ["agent-claude-1.log"]
    assert attempts == 1
    assert status.returncode == 0
    assert f"claude-2, claude-3 {why}" in status.stdout.splitlines()


def test_aider_without_a_model_is_stopped_at_its_browser_login_offer() -> None:
    """With `--yes-always` and no model Aider accepts its own offer of a browser login
    and waits five minutes; execute stops it at the offer and holds its other lane."""
    config = CONFIG.replace('[agents.aider]\nmodel = "gpt-4o"\n', "")
    lanes = {f"aider-{n}": lane({"agent": "aider", "timeout_s": 120}) for n in (1, 2)}
    with harness.project(config, lanes) as project:
        run = execute(project, "--max-parallel", "1")
        log = project.log("aider-1")
    assert run.code == 1
    first = run.tracker["lanes"]["aider-1"]
    assert (first["status"], first["attempts"]) == ("failed", 1)
    assert first["error"].startswith(NO_MODEL)
    assert seconds(first) < 30
    assert "Please open this URL in your browser to connect Aider" in log
    assert run.tracker["lanes"]["aider-2"]["status"] == "blocked"
    assert [line.split(" is not")[0] for line in run.err.splitlines()] == ["held: agent 'aider'"]
