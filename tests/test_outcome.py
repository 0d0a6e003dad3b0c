"""outcome.py: what a finished attempt means for its lane, whichever executor ran it.

An exit code alone never says a lane succeeded: the agent's preset reads its output
(here the real CLIs' recorded output, tests/agents/data/). Reasons that are not the
agent's own exit decide before its output is read; a probe's output is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestree import outcome
from orchestree.config import Config
from orchestree.executors.attempt import LaneUpdate
from orchestree.models import Lane

RECORDED = Path(__file__).parent / "agents" / "data"
NOT_LOGGED_IN = (RECORDED / "claude-not-logged-in.txt").read_text(encoding="utf-8")
SHELL = Config.model_validate({"defaults": {"agent": "shell", "timeout_s": 90}})


def finished(reason: str | None = "exited", code: int | None = 0, **kw: Any) -> LaneUpdate:
    return LaneUpdate("a", 1, "finished", reason=reason, exit_code=code, **kw)


def judge(update: LaneUpdate, lane: Lane | None = None, **kw: Any) -> outcome.Verdict:
    return outcome.judge(SHELL, lane or Lane(), update, **kw)


def claude_result(**fields: Any) -> str:
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "Done."}
    return json.dumps({**result, **fields}) + "\n"


# --- the agent's own exit: its preset reads the output --------------------------------


def test_a_zero_exit_of_a_shell_agent_is_success_and_a_nonzero_one_names_the_last_line() -> None:
    assert judge(finished(code=0, output="+ make\nok\n")) == outcome.Verdict(True)
    failed = judge(finished(code=2, output="+ make\nmake: *** no rule\n"))
    assert failed.ok is False
    assert failed.error == "exited with code 2: make: *** no rule"


def test_the_supervisors_own_lines_are_never_taken_for_the_agents_words() -> None:
    output = "the agent's last words\norchestree: committed 2 leftover files\n"
    assert (
        judge(finished(code=1, output=output)).error == "exited with code 1: the agent's last words"
    )


def test_an_agent_that_says_it_failed_failed_whatever_its_exit_code() -> None:
    lane = Lane(agent="claude")
    said = judge(
        finished(code=0, output=claude_result(is_error=True, result="API Error: 500")), lane
    )
    assert (said.ok, said.error, said.auth_failure) == (False, "API Error: 500", False)


def test_a_recorded_not_logged_in_run_is_an_authentication_failure() -> None:
    said = judge(finished(code=1, output=NOT_LOGGED_IN), Lane(agent="claude"))
    assert said.ok is False
    assert said.auth_failure is True
    assert said.error == "Not logged in · Please run /login"


def test_a_successful_agents_session_turns_and_cost_are_kept() -> None:
    output = claude_result(session_id="s-1", num_turns=4, total_cost_usd=0.25)
    said = judge(finished(code=0, output=output), Lane(agent="claude"))
    assert said == outcome.Verdict(True, None, False, "s-1", 4, 0.25)


def test_the_lanes_agent_overrides_the_default_agent() -> None:
    # The shell preset would call exit 0 a success; claude reads `is_error`.
    output = claude_result(is_error=True, result="refused")
    assert judge(finished(code=0, output=output)).ok is True
    assert judge(finished(code=0, output=output), Lane(agent="claude")).ok is False


# --- reasons that are not the agent's own exit ----------------------------------------------


def test_a_timeout_names_the_lanes_own_timeout_else_the_default() -> None:
    ended = judge(finished("timeout", None, output=""))
    assert ended == outcome.Verdict(False, "timed out after 90 s; the agent's tree was ended")
    lane = Lane(timeout_s=2.5)
    said = judge(finished("timeout", -15, output="+ sleep 60\nstill working\n"), lane)
    assert said.error == "timed out after 2.5 s: still working"


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("cancelled", "its agent was stopped (orchestree cancel or Ctrl-C); worktree kept"),
        ("interrupted", "its agent was interrupted (Ctrl-C or a signal); worktree kept"),
        ("parent-died", "its orchestrator or worker went away while it ran"),
    ],
)
def test_a_stopped_agent_is_not_judged_on_its_output(reason: str, words: str) -> None:
    assert judge(finished(reason, 0, output="all done\n")) == outcome.Verdict(False, words)


def test_a_failed_setup_names_its_exit_code() -> None:
    said = judge(finished("setup-failed", 3))
    assert said == outcome.Verdict(False, "worktree setup failed (exit 3); see the log")


@pytest.mark.parametrize(
    ("reason", "start"),
    [
        ("gone", "interrupted: its process is gone"),
        ("lost", "worker lost: the Dask worker or the lane's supervisor on it died"),
        ("abandoned", "worker closing: the Dask worker running it was retired"),
        ("claim-conflict", "claim conflict: another run of this attempt holds its claim"),
    ],
)
def test_an_attempt_that_did_not_run_to_its_end_says_why(reason: str, start: str) -> None:
    bare = judge(finished(reason, None))
    assert bare.ok is False
    assert bare.error is not None
    assert bare.error.startswith(start)
    detailed = judge(finished(reason, None, error="worker tcp://10.0.0.2 closed"))
    assert detailed.error == f"{bare.error} (worker tcp://10.0.0.2 closed)"


def test_an_attempt_without_an_exit_code_is_the_supervisors_failure() -> None:
    assert judge(finished("error", None, error="git worktree add failed")).error == (
        "git worktree add failed"
    )
    assert judge(finished("exited", None)).error == "the supervisor failed"
    assert judge(finished(None, None)).error == "the supervisor failed"


def test_a_fatal_sign_fails_the_lane_with_the_agents_words_if_it_has_any() -> None:
    waiting = judge(
        finished("exited", None, output="Allow edit? [y/N]\n"), fatal="it asked a person"
    )
    assert waiting == outcome.Verdict(False, "exited with code -15: Allow edit? [y/N]")
    silent = judge(finished("exited", 0, output=""), fatal="it asked a person")
    assert silent == outcome.Verdict(False, "it asked a person")
    auth = judge(finished("exited", 1, output=NOT_LOGGED_IN), Lane(agent="claude"), fatal="x")
    assert auth.auth_failure is True


# --- a probe's output ------------------------------------------------------------------------


def test_a_probe_lane_fails_when_its_output_is_unusable_and_only_then() -> None:
    calls: list[str] = []

    def problem() -> str | None:
        calls.append("asked")
        return "state_probe.json: missing"

    probe = Lane(kind="probe")
    assert judge(finished(code=0), probe, probe_problem=problem) == outcome.Verdict(
        False, "state_probe.json: missing"
    )
    assert judge(finished(code=0), probe, probe_problem=lambda: None).ok is True
    calls.clear()
    assert judge(finished(code=1, output="x\n"), probe, probe_problem=problem).error == (
        "exited with code 1: x"
    )
    assert judge(finished(code=0), Lane(), probe_problem=problem).ok is True
    assert calls == []  # neither a failed probe nor a plain lane is asked


def test_probe_output_problem_reads_the_file_and_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "state_probe.json"
    assert "missing; the probe wrote no" in (outcome.probe_output_problem(path) or "")
    path.write_text("{not json", encoding="utf-8")
    assert str(path) in (outcome.probe_output_problem(path) or "")
    path.write_text(json.dumps({"probe": "lint", "summary": "clean"}), encoding="utf-8")
    assert outcome.probe_output_problem(path) is None
    path.write_text(json.dumps({"probe": "lint", "summary": "s", "extra": 1}), encoding="utf-8")
    assert outcome.probe_output_problem(path) is not None


def test_plan_output_problem_refuses_a_missing_plan_or_a_cycle(tmp_path: Path) -> None:
    path = tmp_path / "execution_plan.json"
    assert outcome.plan_output_problem(path) == f"{path}: missing; the planner agent wrote no plan"
    cycle = {"lanes": {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}}
    path.write_text(json.dumps(cycle), encoding="utf-8")
    said = outcome.plan_output_problem(path) or ""
    assert said.startswith(f"{path}: ")
    assert "cycle" in said
    path.write_text(json.dumps({"lanes": {"a": {"tasks": ["x"]}}}), encoding="utf-8")
    assert outcome.plan_output_problem(path) is None
