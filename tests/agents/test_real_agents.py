"""The presets against the real Claude Code, Codex, Gemini and Aider CLIs, as a new
user meets them: no login, no API key, no network. Run by `make test-agents` only.

Each preset's exact invocation must pass the real program's own argument parser, and
its failure must be read as failed, with the CLI's own message."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import harness
import pytest

from orchestree.agents import AGENT_EXCLUDES, PARSER_COMPLAINT, get_agent
from orchestree.config import AgentConfig, Config
from orchestree.models import Lane, LaneRework


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    missing = [cli for cli in harness.CLIS if cli not in harness.available()]
    assert not missing, f"not installed: {missing}; run scripts/install-agents.sh"


@pytest.fixture
def box() -> Iterator[harness.Sandbox]:
    with harness.sandbox() as sandbox:
        yield sandbox


def accepted(run: harness.Run) -> None:
    """The program's parser took every argument we gave it."""
    complaint = PARSER_COMPLAINT.search(run.output)
    assert complaint is None, f"{run.cli} rejected {run.argv[:-1]}:\n{run.output}"


@pytest.mark.parametrize("cli", harness.CLIS)
def test_an_unknown_option_draws_the_complaint_we_look_for(cli: str, box: harness.Sandbox) -> None:
    run = harness.run_real(
        box, harness.preset_for(cli, args=["--orchestree-no-such-option"]), timeout_s=20
    )
    assert PARSER_COMPLAINT.search(run.output), run.output
    assert run.exit_code not in (0, None)


def test_claude_not_logged_in(box: harness.Sandbox) -> None:
    preset = harness.preset_for("claude", model="sonnet")
    run = harness.run_real(box, preset, timeout_s=30, budget_usd=0.5)
    accepted(run)
    assert "--max-budget-usd" in run.argv
    outcome = preset.classify(run.output, run.exit_code if run.exit_code is not None else -9)
    assert not outcome.ok
    assert outcome.auth_failure
    assert outcome.error is not None
    assert "Not logged in" in outcome.error
    assert outcome.session_id


def test_claude_resumes_its_own_session_on_a_rework(box: harness.Sandbox) -> None:
    session = "0f6b1c1e-5d6a-4a57-9f6e-2b8f3c0f9a11"
    lane = Lane(
        name="Demo lane",
        tasks=harness.TASKS,
        session_id=session,
        rework=LaneRework(reason="conflict", files=["a.txt"]),
    )
    preset = harness.preset_for("claude")
    run = harness.run_real(box, preset, timeout_s=30, lane=lane)
    accepted(run)
    assert run.argv[run.argv.index("--resume") + 1] == session
    outcome = preset.classify(run.output, run.exit_code if run.exit_code is not None else -9)
    assert not outcome.ok


@pytest.mark.parametrize("mode", ["plan", "dontAsk", "auto"])
def test_claude_takes_a_configured_permission_mode(mode: str, box: harness.Sandbox) -> None:
    preset = get_agent("claude", Config(agents={"claude": AgentConfig(permission_mode=mode)}))
    run = harness.run_real(box, preset, timeout_s=30)
    accepted(run)
    assert run.argv[run.argv.index("--permission-mode") + 1] == mode
    assert preset.classify(run.output, run.exit_code or 0).auth_failure


def test_claude_bypass_permissions_refuses_root(box: harness.Sandbox) -> None:
    settings = AgentConfig(permission_mode="bypassPermissions")
    preset = get_agent("claude", Config(agents={"claude": settings}))
    run = harness.run_real(box, preset, timeout_s=30)
    accepted(run)
    outcome = preset.classify(run.output, run.exit_code if run.exit_code is not None else -9)
    assert not outcome.ok
    assert outcome.error is not None
    if os.geteuid() == 0:
        assert "cannot be used with root/sudo privileges" in outcome.error
    else:
        assert outcome.auth_failure


def test_codex_waits_for_the_network_and_says_so(box: harness.Sandbox) -> None:
    preset = harness.preset_for("codex")
    run = harness.run_real(box, preset, timeout_s=12)
    accepted(run)
    assert run.exit_code is None, "Codex without network should wait until it is killed"
    outcome = preset.classify(run.output, -9)
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.startswith("Reconnecting...")
    progress = [p for p in map(preset.progress_from_line, run.output.splitlines()) if p]
    assert progress, run.output
    assert any(p.startswith(("reconnecting", "waiting for network")) for p in progress)


def test_codex_sandbox_writes_the_worktree_but_cannot_commit(box: harness.Sandbox) -> None:
    """Codex's workspace-write sandbox (tried with `codex sandbox`, the same policy
    `exec` applies) keeps every `.git` read-only, a worktree's included: Codex cannot
    commit, so the runner's auto-commit is what lands its work."""
    script = "echo hi > made-in-sandbox.txt && git add made-in-sandbox.txt"
    proc = subprocess.run(
        ["codex", "sandbox", "-c", 'sandbox_mode="workspace-write"', "--", "sh", "-c", script],
        cwd=box.worktree, env=box.env({}), capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert (box.worktree / "made-in-sandbox.txt").read_text() == "hi\n"
    assert "index.lock': Read-only file system" in proc.stdout + proc.stderr


def test_codex_takes_a_model_and_a_sandbox_mode(box: harness.Sandbox) -> None:
    settings = AgentConfig(model="gpt-5-codex", permission_mode="read-only")
    preset = get_agent("codex", Config(agents={"codex": settings}))
    run = harness.run_real(box, preset, timeout_s=4)
    accepted(run)
    assert '"type":"thread.started"' in run.output


def test_gemini_without_a_key(box: harness.Sandbox) -> None:
    preset = harness.preset_for("gemini")
    run = harness.run_real(box, preset, timeout_s=60)
    accepted(run)
    assert run.exit_code == 41
    assert "not trusted" not in run.output
    assert "YOLO mode is enabled" in run.output
    outcome = preset.classify(run.output, run.exit_code)
    assert (outcome.ok, outcome.auth_failure) == (False, True)
    assert outcome.error is not None
    assert "GEMINI_API_KEY" in outcome.error


def test_gemini_takes_a_model_and_an_approval_mode(box: harness.Sandbox) -> None:
    settings = AgentConfig(model="gemini-2.5-pro", permission_mode="auto_edit")
    preset = get_agent("gemini", Config(agents={"gemini": settings}))
    run = harness.run_real(box, preset, timeout_s=60)
    accepted(run)
    assert "not trusted" not in run.output
    assert preset.classify(run.output, run.exit_code or 0).auth_failure


def test_aider_without_a_model_is_ended_at_its_browser_login_offer(
    box: harness.Sandbox,
) -> None:
    preset = harness.preset_for("aider")
    run = harness.run_real(box, preset, timeout_s=60)
    accepted(run)
    assert run.ended_because == preset.fatal_from_line(
        "Please open this URL in your browser to connect Aider with OpenRouter:"
    )
    assert run.duration_s < 30
    outcome = preset.classify(run.output, -9)
    assert (outcome.ok, outcome.auth_failure) == (False, True)


def test_aider_with_a_model_and_no_key_fails_though_it_exits_0(box: harness.Sandbox) -> None:
    preset = harness.preset_for("aider", model="gpt-4o")
    run = harness.run_real(box, preset, timeout_s=120)
    accepted(run)
    assert run.exit_code == 0
    outcome = preset.classify(run.output, run.exit_code)
    assert (outcome.ok, outcome.auth_failure) == (False, True)
    assert outcome.error is not None
    assert "AuthenticationError" in outcome.error
    # It left its files and no .gitignore edit; the shared excludes keep them out.
    assert any(".aider" in line for line in run.leftovers)
    assert not (box.worktree / ".gitignore").exists()
    exclude = box.repo / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "".join(f"{p}\n" for p in AGENT_EXCLUDES))
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=box.worktree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert status.stdout == ""
