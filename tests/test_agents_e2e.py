"""The four presets end to end through `orchestree execute`, with the fake `claude`,
`codex`, `gemini` and `aider` of tests/fakes/ first on PATH (issue 3, must show 2):
each preset's exact invocation and environment, the prompt, Claude's cost on the lane
and in `status`, a lane that changed nothing, and a missing login held per agent."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker
from orchestree.agents.claude import Claude
from orchestree.agents.gemini import Gemini

if TYPE_CHECKING:
    from conftest import FakeAgents

TASKS = ["Add a greeting to README.md", "Write a short report"]
REPORT = "docs/_generated/{lane}/report.md"
CONFIG = (
    BASE_CONFIG.replace('agent = "shell"', 'agent = "claude"')
    + f"""
[agents.claude]
env = {{ FAKE_AGENT_EDIT = "{REPORT}", FAKE_AGENT_COST = "0.25" }}

[agents.codex]
env = {{ FAKE_AGENT_EDIT = "{REPORT}", FAKE_AGENT_COMMIT = "1" }}

[agents.gemini]
env = {{ FAKE_AGENT_EDIT = "src/gemini.txt" }}

[agents.aider]
model = "gpt-4o"
"""
)
# Aider is given no edit: it "succeeds" and changes nothing but its own droppings.
LANES = {
    "claude-a": "claude",
    "claude-b": "claude",
    "codex-lane": "codex",
    "gemini-lane": "gemini",
    "aider-lane": "aider",
}


def lane_spec(agent: str, **extra: Any) -> dict[str, Any]:
    return {"name": f"{agent} lane", "tasks": TASKS, "agent": agent, **extra}


def options(agent: str, helper: Path) -> list[str]:
    """Each preset's options, before the prompt: what the real programs accept
    (tests/agents/ checks them against their own parsers)."""
    return {
        "claude": [
            "-p", "--permission-mode", "acceptEdits", "--output-format", "json",
            "--allowedTools", "Bash(git add *)", "Bash(git commit *)",
            f"Bash(python3 {helper} *)", "--",
        ],
        "codex": ["exec", "--json", "--sandbox", "workspace-write", "--"],
        "gemini": ["--yolo", "--output-format", "json", "-p"],
        "aider": [
            "--yes-always", "--no-gitignore", "--no-check-update", "--no-analytics",
            "--model", "gpt-4o", "--message",
        ],
    }[agent]  # fmt: skip


@pytest.fixture
def ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents: FakeAgents
) -> tuple[Path, str]:
    """One `execute` of a lane per preset (two for Claude), every agent a fake."""
    repo = make_repo(tmp_path, monkeypatch, CONFIG)
    add_lanes(repo, {lane: lane_spec(agent) for lane, agent in LANES.items()})
    result = cli(repo, "execute", "--max-parallel", str(len(LANES)))  # all at once
    assert result.code == 0, result.out + result.err
    return repo, result.out


def test_each_preset_is_run_as_its_cli_expects(
    ran: tuple[Path, str], fake_agents: FakeAgents
) -> None:
    repo, _ = ran
    records = fake_agents.runs()
    assert sorted(records) == sorted(f"{agent}-{lane}" for lane, agent in LANES.items())
    tracker_path = str((repo / ".orchestration" / "tracker.json").resolve())
    ports, trees = set(), set()
    for lane, agent in LANES.items():
        run = records[f"{agent}-{lane}"]
        env = run["env"]
        worktree = repo / ".worktrees" / f"agent-{lane}"
        prompt_file = repo / ".orchestration" / "runs" / f"{lane}.prompt.md"
        prompt = prompt_file.read_text(encoding="utf-8")
        helper = repo.resolve() / ".orchestration" / "access_tracker.py"
        assert run["argv"] == [str(fake_agents.bin / agent), *options(agent, helper), prompt]
        assert (run["stdin"], run["stdin_is_devnull"]) == ("", True)
        assert run["cwd"] == str(worktree)
        for task in TASKS:
            assert task in prompt
        assert tracker_path in prompt
        assert f"docs/_generated/{lane}/" in prompt
        assert {key: env.get(key) for key in env if key.startswith("ORCHESTREE_")} == {
            "ORCHESTREE_TRACKER": tracker_path,
            "ORCHESTREE_LANE": lane,
            "ORCHESTREE_AGENT": f"agent-{lane}",
            "ORCHESTREE_BRANCH": f"lane-{lane}",
            "ORCHESTREE_WORKTREE": str(worktree),
            "ORCHESTREE_RESULTS_DIR": f"docs/_generated/{lane}",
            "ORCHESTREE_PROMPT_FILE": str(prompt_file.resolve()),
            "ORCHESTREE_PORT": env["ORCHESTREE_PORT"],
            "ORCHESTREE_ATTEMPT": "1",
            # marks every process of this agent's tree, so it can be ended as one
            "ORCHESTREE_TREE": env["ORCHESTREE_TREE"],
        }
        assert re.fullmatch(r"[0-9a-f]{16}", env["ORCHESTREE_TREE"])
        trees.add(env["ORCHESTREE_TREE"])
        ports.add(env["ORCHESTREE_PORT"])
        # git's auto-gc and auto-maintenance off for the agent's own git calls
        count = int(env["GIT_CONFIG_COUNT"])
        settings = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}
        assert settings == {"gc.auto": "0", "maintenance.auto": "false"}
        trust = env.get("GEMINI_CLI_TRUST_WORKSPACE")
        assert trust == ("true" if agent == "gemini" else None)
    assert len(ports) == len(LANES)  # lanes running side by side get distinct ports
    assert len(trees) == len(LANES)  # and each agent's tree its own token
    gemini_log = (repo / ".orchestration" / "logs" / "agent-gemini-lane.log").read_text()
    assert "YOLO mode is enabled" in gemini_log
    assert "not trusted" not in gemini_log


def test_execute_warns_once_before_starting_when_codex_has_no_bubblewrap(
    ran: tuple[Path, str],
) -> None:
    _, out = ran
    lines = out.splitlines()
    warned = [i for i, line in enumerate(lines) if "wants bubblewrap on PATH" in line]
    if shutil.which("bwrap"):
        assert warned == []
    else:
        assert len(warned) == 1
        assert lines[0].startswith("! warning: agent 'codex': ")
        assert "install the `bubblewrap` package" in lines[0]


def test_claudes_cost_session_and_turns_land_on_the_lane_and_in_status(
    ran: tuple[Path, str],
) -> None:
    repo, _ = ran
    lanes = tracker(repo)["lanes"]
    for lane in ("claude-a", "claude-b"):
        assert (lanes[lane]["status"], lanes[lane]["cost_usd"], lanes[lane]["num_turns"]) == (
            "completed",
            0.25,
            3,
        )
        log = (repo / ".orchestration" / "logs" / f"agent-{lane}.log").read_text()
        assert f'"session_id": "{lanes[lane]["session_id"]}"' in log  # Claude's own
    assert lanes["claude-a"]["session_id"] != lanes["claude-b"]["session_id"]
    assert lanes["codex-lane"]["session_id"]  # Codex's thread id, from its JSON events
    assert lanes["codex-lane"]["num_turns"] == 1
    # Codex and Gemini report tokens, no cost: priced by costs.py's table, marked estimated
    # (1200 input and 300 output tokens at $1.25 and $10 per million).
    for lane in ("codex-lane", "gemini-lane"):
        assert (lanes[lane]["cost_usd"], lanes[lane]["cost_estimated"]) == (0.0045, True)
    assert lanes["claude-a"]["cost_estimated"] is False
    status = cli(repo, "status")
    assert status.code == 0
    table = [row.split() for row in status.out.splitlines()]
    rows = {cells[0]: " ".join(cells) for cells in table if cells and cells[0] in lanes}
    assert "$0.2500" in rows["claude-a"]
    assert "$0.2500" in rows["claude-b"]
    assert "$0.0045" in rows["codex-lane"]
    assert "cost: $0.5090 over 4 lane(s) (in part estimated from token counts and [prices])" in (
        " ".join(status.out.split())
    )


def test_work_lands_on_each_lane_branch(ran: tuple[Path, str]) -> None:
    repo, _ = ran
    lanes = tracker(repo)["lanes"]
    expected = {
        "claude-a": ["docs/_generated/claude-a/report.md"],
        "claude-b": ["docs/_generated/claude-b/report.md"],
        "codex-lane": ["docs/_generated/codex-lane/report.md"],
        "gemini-lane": ["src/gemini.txt"],
        "aider-lane": [],
    }
    for lane, files in expected.items():
        assert lanes[lane]["status"] == "completed"
        assert lanes[lane]["changed_files"] == files
        assert lanes[lane]["no_changes"] is (not files)
        tree = git(repo, "ls-tree", "-r", "--name-only", f"lane-{lane}").splitlines()
        assert sorted(tree) == sorted(["README.md", "orchestree.toml", *files])
    # Codex committed its own work; the others' was committed for them.
    subject = git(repo, "log", "-1", "--format=%s", "lane-codex-lane")
    assert subject == "fake codex: edit docs/_generated/codex-lane/report.md"
    assert git(repo, "log", "-1", "--format=%s", "lane-claude-a").startswith(
        "orchestree: work left uncommitted by lane claude-a"
    )


def test_a_lane_that_changed_nothing_is_completed_with_a_warning(ran: tuple[Path, str]) -> None:
    repo, out = ran
    worktree = repo / ".worktrees" / "agent-aider-lane"
    assert (worktree / ".aider.chat.history.md").exists()  # its droppings stayed out
    assert "✓ aider-lane: completed: completed but changed nothing" in out
    monitor = cli(repo, "monitor", "--once")
    assert monitor.code == 0
    assert "lane aider-lane finished without changing any file" in monitor.out
    assert "lane claude-a finished without" not in monitor.out


NOT_LOGGED_IN = {
    "claude": "Not logged in · Please run /login",
    "gemini": "Please set an Auth method in your",
    "aider": "litellm.AuthenticationError: AuthenticationError: OpenAIException",
}


def test_not_logged_in_fails_once_holds_the_agents_other_lanes_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents: FakeAgents
) -> None:
    config = BASE_CONFIG + '\n[agents.aider]\nmodel = "gpt-4o"\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    lanes = {
        f"{agent}-{n}": lane_spec(agent, max_attempts=2)
        for agent in NOT_LOGGED_IN
        for n in (1, 2, 3)
    }
    add_lanes(repo, lanes)
    fake_agents.set(mode="not-logged-in")
    result = cli(repo, "execute", "--max-parallel", "1")
    assert result.code == 1, result.out + result.err
    state = tracker(repo)["lanes"]
    assert sorted(fake_agents.runs()) == [f"{agent}-{agent}-1" for agent in sorted(NOT_LOGGED_IN)]
    held = [line for line in result.err.splitlines() if line.startswith("held: ")]
    assert len(held) == len(NOT_LOGGED_IN), result.err
    for agent, said in NOT_LOGGED_IN.items():
        first = state[f"{agent}-1"]
        assert (first["status"], first["attempts"]) == ("failed", 1)
        assert first["error"].startswith(said)
        hint = {"claude": Claude, "gemini": Gemini}.get(agent)
        login = hint.login if hint else 'name a model with [agents.aider] model = "..."'
        mine = [line for line in held if f"agent {agent!r} is not logged in" in line]
        assert len(mine) == 1
        assert said in mine[0]
        assert login in mine[0]
        # The hint is said once in the whole output, not once per lane.
        assert (result.out + result.err).count(login) == 1
        for n in (2, 3):
            other = state[f"{agent}-{n}"]
            assert (other["status"], other["attempts"], other["held"]) == ("blocked", 0, agent)
            assert f"held: {other['error']}" == mine[0]  # a field holds the state, not a prefix
        assert f"✗ {agent}-2, {agent}-3: blocked: agent {agent!r} is not logged in" in result.out
    status = cli(repo, "status")
    for agent in NOT_LOGGED_IN:
        line = next(ln for ln in status.out.splitlines() if ln.startswith(f"{agent}-2, {agent}-3"))
        assert line == f"{agent}-2, {agent}-3 held: {state[f'{agent}-2']['error']}"
