"""Agent presets: argv, environment, prompt, and failure signs read from the real CLIs'
own output (tests/agents/data/, recorded by scripts/record-agents.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestree import agents, git
from orchestree.agents import (
    AGENT_EXCLUDES,
    PARSER_COMPLAINT,
    REGISTRY,
    LaunchContext,
    build_prompt,
    check_available,
    get_agent,
)
from orchestree.config import PRESETS, AgentConfig, Config
from orchestree.errors import UserError
from orchestree.models import Lane

DATA = Path(__file__).parent / "agents" / "data"
PROMPT = "You are the agent of lane x.\nIt's got 'quotes', $VARS and `backticks`; {json}"


def recorded(case: str) -> tuple[str, int | None, dict[str, Any]]:
    meta = json.loads((DATA / f"{case}.json").read_text(encoding="utf-8"))
    return (DATA / f"{case}.txt").read_text(encoding="utf-8"), meta["exit_code"], meta


def killed(exit_code: int | None) -> int:
    """The exit code a runner sees for a process it killed with SIGKILL."""
    return -9 if exit_code is None else exit_code


@pytest.fixture
def ctx(tmp_path: Path) -> LaunchContext:
    return LaunchContext(
        lane_id="db-projection",
        lane=Lane(name="DB projection", tasks=["Write the projection", "Test it"]),
        worktree=tmp_path / ".worktrees" / "agent-db-projection",
        branch="lane-db-projection",
        tracker=tmp_path / ".orchestration" / "tracker.json",
        prompt_file=tmp_path / ".orchestration" / "prompts" / "db-projection.md",
    )


def config(**agents_: AgentConfig) -> Config:
    return Config(agents=dict(agents_))


# --- presets' argv and environment ------------------------------------------------


def test_registry_holds_exactly_the_configs_presets() -> None:
    assert set(REGISTRY) == set(PRESETS)


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        (
            "claude",
            ["claude", "-p", "--permission-mode", "acceptEdits", "--output-format", "json",
             "--allowedTools", "Bash(git add *)", "Bash(git commit *)",
             "Bash(python3 {helper} *)", "--", PROMPT],
        ),
        ("codex", ["codex", "exec", "--json", "--sandbox", "workspace-write", "--", PROMPT]),
        (
            "aider",
            ["aider", "--yes-always", "--no-gitignore", "--no-check-update", "--no-analytics",
             "--message", PROMPT],
        ),
        ("gemini", ["gemini", "--yolo", "--output-format", "json", "-p", PROMPT]),
    ],
)  # fmt: skip
def test_default_argv_passes_the_prompt_as_one_argument(
    name: str, argv: list[str], ctx: LaunchContext
) -> None:
    helper = ctx.tracker.parent / "access_tracker.py"
    argv = [arg.replace("{helper}", str(helper)) for arg in argv]
    assert get_agent(name, Config()).invocation(ctx, PROMPT).argv == argv


def test_claude_budget_model_and_permission_mode(ctx: LaunchContext) -> None:
    lane = ctx.lane.model_copy(update={"budget_usd": 2.5})
    ctx = LaunchContext(**{**ctx.__dict__, "lane": lane})
    preset = get_agent("claude", config(claude=AgentConfig(permission_mode="plan", model="opus")))
    argv = preset.invocation(ctx, PROMPT).argv
    assert argv[argv.index("--permission-mode") + 1] == "plan"
    assert argv[argv.index("--max-budget-usd") + 1] == "2.5"
    assert argv[argv.index("--model") + 1] == "opus"
    assert argv[-2:] == ["--", PROMPT]


def test_no_budget_flag_without_a_budget(ctx: LaunchContext) -> None:
    assert "--max-budget-usd" not in get_agent("claude", Config()).invocation(ctx, PROMPT).argv


@pytest.mark.parametrize(
    ("name", "flag", "value"),
    [("codex", "--sandbox", "read-only"), ("gemini", "--approval-mode", "auto_edit")],
)
def test_permission_mode_maps_to_each_clis_own_switch(
    name: str, flag: str, value: str, ctx: LaunchContext
) -> None:
    preset = get_agent(name, config(**{name: AgentConfig(permission_mode=value, model="m1")}))
    argv = preset.invocation(ctx, PROMPT).argv
    assert argv[argv.index(flag) + 1] == value
    assert argv[argv.index("--model") + 1] == "m1"
    assert "--yolo" not in argv


@pytest.mark.parametrize("name", ["aider", "shell"])
def test_permission_mode_is_refused_where_it_means_nothing(name: str) -> None:
    with pytest.raises(UserError, match=rf"\[agents\.{name}\] permission_mode"):
        get_agent(name, config(**{name: AgentConfig(permission_mode="plan")}))


def test_aider_model_and_extra_args_go_before_the_prompt(ctx: LaunchContext) -> None:
    settings = AgentConfig(model="gpt-4o", args=["--no-auto-commits"])
    argv = get_agent("aider", config(aider=settings)).invocation(ctx, PROMPT).argv
    assert argv[-4:] == ["gpt-4o", "--no-auto-commits", "--message", PROMPT]


def test_a_new_preset_states_its_prompt_option_and_model_as_data(ctx: LaunchContext) -> None:
    class Tool(agents.Preset):
        program = "tool"
        prompt_option = ("--ask",)

        def options(self, ctx: LaunchContext) -> list[str]:
            return ["--quiet", *self.model_args()]

    settings = AgentConfig(model="m1", args=["--extra"])
    argv = Tool("tool", settings).invocation(ctx, PROMPT).argv
    assert argv == ["tool", "--quiet", "--model", "m1", "--extra", "--ask", PROMPT]
    assert Tool("tool").invocation(ctx, PROMPT).argv == ["tool", "--quiet", "--ask", PROMPT]


def test_every_agent_gets_the_orchestree_environment(ctx: LaunchContext) -> None:
    env = get_agent("codex", Config()).invocation(ctx, PROMPT).env
    assert env["ORCHESTREE_TRACKER"] == str(ctx.tracker)
    assert Path(env["ORCHESTREE_TRACKER"]).is_absolute()
    assert env["ORCHESTREE_LANE"] == "db-projection"
    assert env["ORCHESTREE_AGENT"] == "agent-db-projection"
    assert env["ORCHESTREE_BRANCH"] == "lane-db-projection"
    assert env["ORCHESTREE_WORKTREE"] == str(ctx.worktree)
    assert env["ORCHESTREE_RESULTS_DIR"] == "docs/_generated/db-projection"
    assert env["ORCHESTREE_PROMPT_FILE"] == str(ctx.prompt_file)
    assert {k: v for k, v in env.items() if k.startswith("GIT_CONFIG")} == git.config_env(git.NO_GC)


def test_agent_git_calls_run_without_auto_gc(ctx: LaunchContext, tmp_path: Path) -> None:
    env = {**os.environ, **get_agent("shell", Config()).invocation(ctx, PROMPT).env}
    got = subprocess.run(
        ["git", "config", "gc.auto"], env=env, cwd=tmp_path, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert got.stdout.strip() == "0"


def test_gemini_is_told_to_trust_the_new_worktree(ctx: LaunchContext) -> None:
    env = get_agent("gemini", Config()).invocation(ctx, PROMPT).env
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"


def test_custom_agent_fills_placeholders_and_keeps_other_braces(ctx: LaunchContext) -> None:
    settings = AgentConfig(
        command=["mybot", "--task", "{prompt}", "--file={prompt_file}", '{"lane": "{lane}"}',
                 "{worktree}", "{branch}", "{tracker}", "{unknown}"],
        env={"MYBOT_MODE": "auto", "MYBOT_LANE": "lane {lane}"},
    )  # fmt: skip
    inv = get_agent("mybot", config(mybot=settings)).invocation(ctx, PROMPT)
    assert inv.argv == [
        "mybot", "--task", PROMPT, f"--file={ctx.prompt_file}", '{"lane": "db-projection"}',
        str(ctx.worktree), "lane-db-projection", str(ctx.tracker), "{unknown}",
    ]  # fmt: skip
    assert inv.env["MYBOT_MODE"] == "auto"
    assert inv.env["MYBOT_LANE"] == "lane db-projection"
    assert inv.env["ORCHESTREE_LANE"] == "db-projection"


def test_a_preset_with_its_own_command_keeps_its_failure_signs(ctx: LaunchContext) -> None:
    settings = AgentConfig(command=["/opt/claude/bin/claude", "-p", "{prompt}"])
    preset = get_agent("claude", config(claude=settings))
    assert preset.invocation(ctx, PROMPT).argv == ["/opt/claude/bin/claude", "-p", PROMPT]
    output, code, _ = recorded("claude-not-logged-in")
    assert preset.classify(output, killed(code)).auth_failure


def test_unknown_agent_is_a_user_error() -> None:
    with pytest.raises(UserError, match="'nobot' is neither a preset"):
        get_agent("nobot", Config())


# --- the shell preset, run for real ---------------------------------------------------


def run_shell(ctx: LaunchContext, tasks: list[str]) -> tuple[str, int]:
    lane = Lane(name="shell", tasks=tasks)
    ctx = LaunchContext(**{**ctx.__dict__, "lane": lane})
    inv = get_agent("shell", Config()).invocation(ctx, "ignored")
    proc = subprocess.run(
        inv.argv, env={**os.environ, **inv.env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return proc.stdout, proc.returncode


def test_shell_runs_each_task_in_turn(ctx: LaunchContext, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    output, code = run_shell(ctx, [f"echo 'one two' > {out}", f'echo "$ORCHESTREE_LANE" >> {out}'])
    assert code == 0, output
    assert out.read_text() == "one two\ndb-projection\n"
    assert get_agent("shell", Config()).classify(output, code).ok


def test_shell_stops_at_the_first_failure_with_its_exit_code(
    ctx: LaunchContext, tmp_path: Path
) -> None:
    never = tmp_path / "never"
    output, code = run_shell(ctx, ["true", "echo broken >&2; exit 3", f"touch {never}"])
    assert code == 3
    assert not never.exists()
    outcome = get_agent("shell", Config()).classify(output, code)
    assert not outcome.ok
    assert outcome.error == (
        "exited with code 3: task failed with exit code 3: echo broken >&2; exit 3"
    )


def test_a_task_that_only_mentions_an_unknown_option_still_succeeds(
    ctx: LaunchContext,
) -> None:
    output, code = run_shell(ctx, ["echo 'warning: unknown option --foo ignored'"])
    assert get_agent("shell", Config()).classify(output, code).ok


# --- the prompt -------------------------------------------------------------------------


def test_prompt_names_tasks_place_results_commit_and_tracker(ctx: LaunchContext) -> None:
    prompt = build_prompt(ctx)
    assert "lane DB projection (db-projection)" in prompt
    assert "1. Write the projection\n2. Test it" in prompt
    assert str(ctx.worktree) in prompt
    assert "lane-db-projection" in prompt
    assert "docs/_generated/db-projection/" in prompt
    assert "git commit" in prompt
    expected = (
        f"python3 {ctx.tracker.parent / 'access_tracker.py'} {ctx.tracker} "
        '\'{"lanes": {"db-projection": {"progress": "50% complete: parser done"}}}\''
    )
    assert expected in prompt
    assert not prompt.startswith("-")


@pytest.mark.parametrize("in_worktree", [True, False])
def test_prompt_and_approval_name_orchestrations_read_only_helper(
    ctx: LaunchContext, in_worktree: bool
) -> None:
    # The worktree's copy is the agent's to edit: only the one outside is pre-approved.
    ctx = LaunchContext(**{**ctx.__dict__, "helper_in_worktree": in_worktree})
    helper = ctx.tracker.parent / "access_tracker.py"
    assert f"python3 {helper} {ctx.tracker} " in build_prompt(ctx)
    argv = get_agent("claude", Config()).invocation(ctx, "p").argv
    assert f"Bash(python3 {helper} *)" in argv
    assert not any("python3 access_tracker.py" in arg for arg in argv)


def test_prompt_carries_a_lanes_own_prompt_and_expected_results(ctx: LaunchContext) -> None:
    lane = Lane(prompt="Review for injection risks.", results=["docs/_generated/x/r.md"])
    prompt = build_prompt(LaunchContext(**{**ctx.__dict__, "lane": lane}))
    assert "Review for injection risks." in prompt
    assert "Expected results: docs/_generated/x/r.md" in prompt


def test_a_tracker_path_with_spaces_is_quoted_for_the_shell(tmp_path: Path) -> None:
    tracker = tmp_path / "my repo" / ".orchestration" / "tracker.json"
    ctx = LaunchContext("x", Lane(), tmp_path, "lane-x", tracker, tmp_path / "p.md")
    helper = tracker.parent / "access_tracker.py"
    assert f"python3 '{helper}' '{tracker}' '" in build_prompt(ctx)


# --- programs available ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("claude", "npm install -g @anthropic-ai/claude-code"),
        ("codex", "npm install -g @openai/codex"),
        ("gemini", "npm install -g @google/gemini-cli"),
        ("aider", "pipx install aider-chat"),
    ],
)
def test_a_missing_program_names_the_agent_and_how_to_install_it(
    name: str, package: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError) as err:
        check_available(name, Config(), path=str(tmp_path))
    message = str(err.value)
    assert message.startswith(f"agent {name!r}: program {name!r} not found on PATH; {package}")
    assert f"[agents.{name}] command in orchestree.toml" in message


def test_a_present_program_passes(tmp_path: Path) -> None:
    program = tmp_path / "claude"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    check_available("claude", Config(), path=str(tmp_path))


def test_a_custom_agents_missing_program_says_to_fix_its_command(tmp_path: Path) -> None:
    cfg = config(mybot=AgentConfig(command=["mybot", "{prompt}"]))
    with pytest.raises(UserError, match=r"'mybot' not found.*fix \[agents\.mybot\] command"):
        check_available("mybot", cfg, path=str(tmp_path))


def test_codex_warns_once_without_bubblewrap(tmp_path: Path) -> None:
    warnings = agents.agent_warnings({"codex", "claude"}, Config(), path=str(tmp_path))
    assert len(warnings) == 1
    assert "`bubblewrap` package" in warnings[0]
    bwrap = tmp_path / "bwrap"
    bwrap.write_text("#!/bin/sh\n")
    bwrap.chmod(0o755)
    assert agents.agent_warnings({"codex"}, Config(), path=str(tmp_path)) == []


def test_codex_without_a_sandbox_needs_no_bubblewrap(tmp_path: Path) -> None:
    cfg = config(codex=AgentConfig(permission_mode="danger-full-access"))
    assert agents.agent_warnings({"codex"}, cfg, path=str(tmp_path)) == []


# --- failure signs, on the real programs' recorded output ------------------------------


def test_claude_not_logged_in_is_an_auth_failure() -> None:
    output, code, meta = recorded("claude-not-logged-in")
    assert code == 1
    outcome = get_agent("claude", Config()).classify(output, code)
    assert not outcome.ok
    assert outcome.auth_failure
    assert outcome.error == "Not logged in · Please run /login"
    assert outcome.session_id
    assert outcome.num_turns == 1
    assert outcome.cost_usd == 0
    assert "--max-budget-usd" in meta["argv"]


def test_claudes_is_error_decides_whatever_the_exit_code() -> None:
    output, _, _ = recorded("claude-not-logged-in")
    preset = get_agent("claude", Config())
    assert not preset.classify(output, 0).ok
    result = json.loads(output)
    result.update(is_error=False, result="Done.", num_turns=4, total_cost_usd=0.25)
    success = preset.classify(json.dumps(result), 0)
    assert (success.ok, success.error, success.num_turns, success.cost_usd) == (
        True, None, 4, 0.25,
    )  # fmt: skip


def test_claude_refusing_bypass_permissions_as_root_says_why() -> None:
    output, code, meta = recorded("claude-bypass-permissions")
    assert meta["as_root"]
    assert code == 1
    outcome = get_agent("claude", Config()).classify(output, code)
    assert not outcome.ok
    assert not outcome.auth_failure
    assert outcome.error == (
        "exited with code 1: --dangerously-skip-permissions cannot be used with root/sudo "
        "privileges for security reasons"
    )


def test_codex_without_network_fails_with_its_own_message() -> None:
    output, code, meta = recorded("codex-no-network")
    assert code is None
    assert meta["ended_because"].startswith("timeout")
    outcome = get_agent("codex", Config()).classify(output, killed(code))
    assert not outcome.ok
    assert not outcome.auth_failure
    assert outcome.error is not None
    assert outcome.error.startswith("Reconnecting... waiting for network")
    assert outcome.session_id == json.loads(output.splitlines()[1])["thread_id"]


def test_codex_progress_says_it_waits_for_the_network() -> None:
    output, _, _ = recorded("codex-no-network")
    preset = get_agent("codex", Config())
    progress = [p for p in map(preset.progress_from_line, output.splitlines()) if p]
    assert progress[0] == "working"
    assert "reconnecting (2/5)" in progress
    assert progress[-1] == "waiting for network"


def test_gemini_without_a_key_is_an_auth_failure() -> None:
    output, code, _ = recorded("gemini-no-key")
    assert code == 41
    outcome = get_agent("gemini", Config()).classify(output, code)
    assert not outcome.ok
    assert outcome.auth_failure
    assert outcome.error is not None
    assert outcome.error.startswith("Please set an Auth method")
    assert "GEMINI_API_KEY" in outcome.error
    assert outcome.session_id
    assert "not trusted" not in output


def test_gemini_text_output_exit_41_is_an_auth_failure() -> None:
    output, code, _ = recorded("gemini-no-key")
    message = json.loads(output[output.index("{") :])["error"]["message"]
    text = output[: output.index("{")] + message + "\n"  # what --output-format text prints
    outcome = get_agent("gemini", Config()).classify(text, killed(code))
    assert (outcome.ok, outcome.auth_failure, outcome.error) == (False, True, message)


def test_aider_with_a_model_and_no_key_fails_although_it_exits_0() -> None:
    output, code, meta = recorded("aider-model-no-key")
    assert code == 0
    outcome = get_agent("aider", Config()).classify(output, code)
    assert not outcome.ok
    assert outcome.auth_failure
    assert outcome.error is not None
    assert outcome.error.startswith("litellm.AuthenticationError: AuthenticationError:")
    assert outcome.error.endswith(
        "The API provider is not able to authenticate you. Check your API key."
    )
    assert {line.split()[-1] for line in meta["leftovers"]} == {
        ".aider.chat.history.md", ".aider.input.history", ".aider.tags.cache.v4/cache.db",
    }  # fmt: skip


def test_an_aider_error_it_retries_is_not_a_failure() -> None:
    """Aider prints "Retrying in N seconds..." (coders/base_coder.py) after an error it
    tries again; only an error it gives up on fails the lane."""
    output, _, _ = recorded("aider-model-no-key")
    retried = output.replace(
        "Check your API key.\n", "Check your API key.\nRetrying in 0.2 seconds...\n"
    )
    assert retried != output
    assert get_agent("aider", Config()).classify(retried, 0).ok


def test_aider_without_a_model_is_stopped_at_its_browser_login_offer() -> None:
    output, code, meta = recorded("aider-no-model")
    preset = get_agent("aider", Config())
    fatal = [f for f in map(preset.fatal_from_line, output.splitlines()) if f]
    assert fatal == ["Aider is waiting for a browser login; no model or key is configured"]
    assert meta["ended_because"] == fatal[0]
    outcome = preset.classify(output, killed(code))
    assert (outcome.ok, outcome.auth_failure) == (False, True)
    assert outcome.error is not None
    assert outcome.error.startswith("No LLM model was specified and no API keys were provided.")


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini", "aider"])
def test_an_argument_parser_complaint_is_the_lanes_error(cli: str) -> None:
    output, code, _ = recorded(f"{cli}-unknown-option")
    assert code not in (0, None)
    outcome = get_agent(cli, Config()).classify(output, code)
    assert not outcome.ok
    assert outcome.error is not None
    assert (
        "--orchestree-no-such-option" in outcome.error
        or "orchestree-no-such-option" in outcome.error
    )
    assert PARSER_COMPLAINT.search(outcome.error)


@pytest.mark.parametrize(
    "case", ["claude-not-logged-in", "codex-no-network", "gemini-no-key", "aider-model-no-key"]
)
def test_the_presets_own_argv_drew_no_parser_complaint(case: str) -> None:
    output, _, _ = recorded(case)
    assert not PARSER_COMPLAINT.search(output)


def test_recordings_name_the_programs_version() -> None:
    for meta_file in DATA.glob("*.json"):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        assert meta["version"], meta_file
        assert meta["argv"][0] == meta["program"]


def test_aiders_droppings_are_kept_out_of_commits(tmp_path: Path) -> None:
    _, _, meta = recorded("aider-model-no-key")
    git.run("init", "-q", cwd=tmp_path)
    for line in meta["leftovers"]:
        path = tmp_path / line.split()[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert git.add_excludes(tmp_path, list(AGENT_EXCLUDES)) == list(AGENT_EXCLUDES)
    assert git.out("status", "--porcelain", "--untracked-files=all", cwd=tmp_path) == ""
