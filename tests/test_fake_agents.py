"""The fake CLIs in tests/fakes/ answer the presets' invocations as the real programs
do, so the runner's tests can use them: checked here through each preset."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from orchestree import git
from orchestree.agents import LaunchContext, Outcome, build_prompt, get_agent
from orchestree.config import AgentConfig, Config
from orchestree.models import Lane

if TYPE_CHECKING:
    from conftest import FakeAgents

CLIS = ["claude", "codex", "gemini", "aider"]


def launch(
    cli: str, repo: Path, *, model: str | None = None, args: list[str] | None = None,
    timeout: float = 20,
) -> tuple[Outcome, str, int]:  # fmt: skip
    ctx = LaunchContext(
        lane_id="fake-lane",
        lane=Lane(name="Fake lane", tasks=["Do the thing"]),
        worktree=repo,
        branch="lane-fake-lane",
        tracker=repo / ".orchestration" / "tracker.json",
        prompt_file=repo / "prompt.md",
    )
    preset = get_agent(cli, Config(agents={cli: AgentConfig(model=model, args=args or [])}))
    inv = preset.invocation(ctx, build_prompt(ctx))
    proc = subprocess.Popen(
        inv.argv, cwd=repo, env=git.git_env(inv.env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        output, _ = proc.communicate()
    return preset.classify(output, proc.returncode), output, proc.returncode


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git.run("init", "-q", "-b", "main", cwd=repo)
    git.run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
            "-m", "init", cwd=repo)  # fmt: skip
    return repo


@pytest.mark.parametrize("cli", CLIS)
def test_a_fake_records_its_invocation_and_succeeds(
    cli: str, fake_agents: FakeAgents, repo: Path
) -> None:
    outcome, output, code = launch(cli, repo, model="some-model")
    assert (outcome.ok, outcome.error, code) == (True, None, 0), output
    run = fake_agents.runs()[f"{cli}-fake-lane"]
    assert Path(run["argv"][0]).parent == fake_agents.bin
    assert "Do the thing" in run["argv"][-1]
    assert run["stdin"] == ""
    assert run["cwd"] == str(repo)
    assert run["env"]["ORCHESTREE_LANE"] == "fake-lane"
    if cli != "aider":
        assert outcome.session_id


def test_fake_claude_reports_cost_and_turns(fake_agents: FakeAgents, repo: Path) -> None:
    fake_agents.set(cost="0.5")
    outcome, _, _ = launch("claude", repo)
    assert (outcome.cost_usd, outcome.num_turns) == (0.5, 3)


@pytest.mark.parametrize("cli", ["claude", "gemini", "aider"])
def test_a_fake_not_logged_in_replays_the_real_failure(
    cli: str, fake_agents: FakeAgents, repo: Path
) -> None:
    fake_agents.set(mode="not-logged-in")
    outcome, output, _ = launch(cli, repo, model="gpt-4o" if cli == "aider" else None)
    assert not outcome.ok, output
    assert outcome.auth_failure


def test_fake_codex_not_logged_in_waits_for_the_network(
    fake_agents: FakeAgents, repo: Path
) -> None:
    fake_agents.set(mode="not-logged-in")
    outcome, _, code = launch("codex", repo, timeout=1.0)
    assert code == -9
    assert outcome.error is not None
    assert outcome.error.startswith("Reconnecting... waiting for network")


@pytest.mark.parametrize("cli", CLIS)
def test_a_failing_fake_fails_its_lane(cli: str, fake_agents: FakeAgents, repo: Path) -> None:
    fake_agents.set(mode="fail")
    outcome, output, _ = launch(cli, repo)
    assert not outcome.ok, output
    assert not outcome.auth_failure
    assert outcome.error


@pytest.mark.parametrize("cli", CLIS)
def test_a_fake_complains_about_an_unknown_option_as_the_real_one(
    cli: str, fake_agents: FakeAgents, repo: Path
) -> None:
    outcome, _, code = launch(cli, repo, args=["--bogus"])
    assert code != 0
    assert outcome.error is not None
    assert "bogus" in outcome.error


def test_a_fake_edits_and_commits(fake_agents: FakeAgents, repo: Path) -> None:
    fake_agents.set(edit="docs/_generated/fake-lane/report.md", commit="1")
    outcome, _, _ = launch("codex", repo)
    assert outcome.ok
    assert git.out("log", "-1", "--format=%s", cwd=repo) == (
        "fake codex: edit docs/_generated/fake-lane/report.md"
    )
    assert git.out("status", "--porcelain", cwd=repo) == ""


def test_fake_aider_leaves_its_droppings(fake_agents: FakeAgents, repo: Path) -> None:
    launch("aider", repo)
    assert (repo / ".aider.chat.history.md").exists()
    assert not (repo / ".gitignore").exists()  # --no-gitignore


def test_fake_gemini_says_untrusted_without_the_trust_variable(
    fake_agents: FakeAgents, repo: Path
) -> None:
    _, output, _ = launch("gemini", repo)
    assert "not trusted" not in output
    proc = subprocess.run(
        [str(fake_agents.bin / "gemini"), "--yolo", "-p", "hi"], cwd=repo, text=True,
        capture_output=True, env={**os.environ, "GEMINI_CLI_TRUST_WORKSPACE": ""}, check=True,
    )  # fmt: skip
    assert "because the current folder is not trusted" in proc.stderr
