"""Run budgets (issue 16 must show 4): `[defaults] budget_usd` over the costs the
agents report (the fake `claude` replays Claude Code's `total_cost_usd`; the fake
`codex` and `gemini` report token usage, priced through costs.py's table or
`[prices]`), and `[defaults] deadline`. Once reached, no lane starts, `status` names
the limit, `execute` exits 1 and nothing committed is lost; `--hard` also cancels the
running lanes, keeping their work."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from exec_helpers import (
    BASE_CONFIG,
    PYTHON,
    add_lanes,
    cli,
    git,
    make_repo,
    statuses,
    tracker,
    write_script,
)
from orchestree.config import parse_duration

if TYPE_CHECKING:
    from conftest import FakeAgents

LANES = ("l1", "l2", "l3", "l4")


def serial(agent: str, defaults: str, extra: str = "") -> str:
    """One lane at a time, every lane on `agent`, which edits and commits."""
    return (
        BASE_CONFIG.replace('agent = "shell"', f'agent = "{agent}"').replace(
            "max_parallel = 4", "max_parallel = 1"
        )
        + defaults
        + f'\n[agents.{agent}]\nenv = {{ FAKE_AGENT_EDIT = "work.txt", FAKE_AGENT_COMMIT = "1" }}\n'
        + extra
    )


def lane_heads(repo: Path) -> dict[str, str]:
    return {k: git(repo, "rev-parse", f"lane-{k}") for k, s in statuses(repo).items()
            if s == "completed"}  # fmt: skip


def assert_stopped_by(repo: Path, words: str, ran: int) -> None:
    """`ran` lanes completed with their commits on their branches; the rest wait."""
    lanes = tracker(repo)["lanes"]
    done = [k for k in LANES if lanes[k]["status"] == "completed"]
    assert done == list(LANES[:ran]), statuses(repo)
    for lane_id in LANES[ran:]:
        assert lanes[lane_id]["status"] == "pending"
        assert lanes[lane_id]["waiting_for"] == words.split(maxsplit=1)[0]
    for lane_id in done:  # the agent's commit is on the lane branch
        log = git(repo, "log", "--format=%s", f"main..lane-{lane_id}")
        assert "edit work.txt" in log
    status = cli(repo, "status")
    assert f"stopped starting lanes: {words}" in " ".join(status.out.split()), status.out


def test_claude_lanes_stop_starting_once_the_budget_is_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents: FakeAgents
) -> None:
    repo = make_repo(tmp_path, monkeypatch, serial("claude", "budget_usd = 1.0\n"))
    fake_agents.set(cost="0.4")  # Claude Code's total_cost_usd, per attempt
    add_lanes(repo, {k: {"tasks": [f"do {k}"]} for k in LANES})
    result = cli(repo, "execute")
    assert result.code == 1, result.out + result.err
    assert "budget $1.20 of $1.00 spent: no new lane starts; nothing runs" in result.out
    assert "raise the limit" in result.err
    assert_stopped_by(repo, "budget $1.20 of $1.00 spent", ran=3)
    # Run again: still spent, so nothing starts, and the completed lanes keep their work.
    heads = lane_heads(repo)
    again = cli(repo, "execute")
    assert again.code == 1
    assert "no new lane starts" in again.out
    assert lane_heads(repo) == heads
    assert statuses(repo)["l4"] == "pending"


@pytest.mark.parametrize(
    ("agent", "prices", "ran", "spent"),
    [
        # 100k input and 50k output tokens at the built-in $1.25 and $10 per million
        ("codex", "", 2, "$1.25"),
        ("gemini", "", 2, "$1.25"),
        # [prices] overrides the table: $10 per million input tokens, output free
        ("codex", "[prices.codex]\ninput_per_mtok = 10.0\noutput_per_mtok = 0.0\n", 1, "$1.00"),
        (
            "gemini",
            '[prices."gemini-2.5-pro"]\ninput_per_mtok = 10.0\noutput_per_mtok = 0.0\n',
            1,
            "$1.00",
        ),
    ],
)
def test_token_usage_is_priced_and_counts_against_the_budget(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_agents: FakeAgents,
    agent: str,
    prices: str,
    ran: int,
    spent: str,
) -> None:
    repo = make_repo(tmp_path, monkeypatch, serial(agent, "budget_usd = 1.0\n", prices))
    fake_agents.set(tokens="100000,50000")
    add_lanes(repo, {k: {"tasks": [f"do {k}"]} for k in LANES})
    result = cli(repo, "execute")
    assert result.code == 1, result.out + result.err
    words = f"budget {spent} of $1.00 spent (in part estimated from token counts and [prices])"
    assert_stopped_by(repo, words, ran=ran)
    assert all(tracker(repo)["lanes"][k]["cost_estimated"] for k in LANES[:ran])


def test_the_deadline_stops_new_lanes_and_counts_from_the_recorded_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = write_script(tmp_path / "agent.py", """
time.sleep(1.5)
Path("work.txt").write_text("work\\n")
subprocess.run(["git", "add", "-A"], check=True)
subprocess.run(["git", "commit", "-q", "-m", "edit work.txt"], check=True)
""")  # fmt: skip
    config = (
        BASE_CONFIG.replace("max_parallel = 4", "max_parallel = 1").replace(
            'agent = "shell"', 'agent = "slow"'
        )
        + 'deadline = "2s"\n'
        + f'[agents.slow]\ncommand = ["{PYTHON}", "{agent}"]\n'
    )
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(repo, {k: {"tasks": [f"do {k}"]} for k in LANES})
    result = cli(repo, "execute")
    assert result.code == 1, result.out + result.err
    lanes = tracker(repo)["lanes"]
    ran = sum(lanes[k]["status"] == "completed" for k in LANES)
    assert 1 <= ran <= 2, statuses(repo)  # started before 2 s, none after
    took = tracker(repo)["limits"]["elapsed_s"]
    assert took >= 2.0
    assert_stopped_by(repo, "deadline reached", ran=ran)
    # A later execute counts on from the run's recorded start: the deadline is still past.
    began = time.monotonic()
    again = cli(repo, "execute")
    assert again.code == 1
    assert "deadline reached" in again.out
    assert time.monotonic() - began < 10
    assert sum(s == "completed" for s in statuses(repo).values()) == ran


def slow_agent(folder: Path) -> Path:
    """Commits half its work, leaves the rest uncommitted, then takes a minute."""
    return write_script(folder / "agent.py", """
Path("work.txt").write_text("first half\\n")
subprocess.run(["git", "add", "-A"], check=True)
subprocess.run(["git", "commit", "-q", "-m", "first half"], check=True)
Path("more.txt").write_text("not committed yet\\n")
time.sleep(60)
""")  # fmt: skip


def assert_work_kept(repo: Path, lane_id: str) -> None:
    """Its commits on its branch, and what it left uncommitted, committed after them."""
    log = git(repo, "log", "--format=%s", f"main..lane-{lane_id}").splitlines()
    assert log[-1] == "first half"
    assert git(repo, "show", f"lane-{lane_id}:more.txt") == "not committed yet"
    assert (repo / ".worktrees" / f"agent-{lane_id}" / "more.txt").exists()


def test_hard_cancels_the_running_lanes_once_the_budget_is_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents: FakeAgents
) -> None:
    config = (
        serial("claude", "budget_usd = 0.5\n").replace("max_parallel = 1", "max_parallel = 2")
        + f'[agents.slow]\ncommand = ["{PYTHON}", "{slow_agent(tmp_path)}"]\n'
    )
    repo = make_repo(tmp_path, monkeypatch, config)
    fake_agents.set(cost="0.75", sleep="1")
    add_lanes(repo, {"l1": {"tasks": ["quick"]}, "l2": {"tasks": ["slow"], "agent": "slow"},
                     "l3": {"tasks": ["later"]}})  # fmt: skip
    began = time.monotonic()
    result = cli(repo, "execute", "--hard")
    assert time.monotonic() - began < 30  # not the slow agent's 60 s
    assert result.code == 1, result.out + result.err
    assert "budget $0.75 of $0.50 spent: no new lane starts; cancelling" in result.out
    assert statuses(repo) == {"l1": "completed", "l2": "cancelled", "l3": "pending"}
    assert_work_kept(repo, "l2")
    assert "edit work.txt" in git(repo, "log", "--format=%s", "main..lane-l1")


def test_hard_cancels_the_running_lanes_and_keeps_their_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = slow_agent(tmp_path)
    config = (
        BASE_CONFIG.replace('agent = "shell"', 'agent = "slow"').replace(
            "max_parallel = 4", "max_parallel = 2"
        )
        + "deadline = 1.5\n"
        + f'[agents.slow]\ncommand = ["{PYTHON}", "{agent}"]\n'
    )
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(repo, {k: {"tasks": [f"do {k}"]} for k in LANES})
    began = time.monotonic()
    result = cli(repo, "execute", "--hard")
    assert time.monotonic() - began < 30  # not the agents' 60 s
    assert result.code == 1, result.out + result.err
    assert "deadline reached" in result.out
    assert "cancelling the running lanes" in result.out
    lanes = tracker(repo)["lanes"]
    assert [lanes[k]["status"] for k in LANES] == ["cancelled", "cancelled", "pending", "pending"]
    for lane_id in ("l1", "l2"):
        assert_work_kept(repo, lane_id)
    assert {lanes[k]["waiting_for"] for k in ("l3", "l4")} == {"deadline"}


def test_a_deadline_is_a_duration() -> None:
    assert [parse_duration(t) for t in ("2h", "30m", "1h30m", "90s", "45")] == [
        7200, 1800, 5400, 90, 45
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_a_bad_deadline_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    (repo / "orchestree.toml").write_text(BASE_CONFIG + 'deadline = "tomorrow"\n')
    result = cli(repo, "execute")
    assert result.code == 2
    assert result.err.strip().count("\n") == 0
    assert "'defaults.deadline'" in result.err
    assert '"2h"' in result.err


def test_no_rework_starts_once_the_deadline_is_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_rework import rework_repo

    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"\nmax_rework = 2')
    config = repo / "orchestree.toml"
    config.write_text(config.read_text().replace("[defaults]\n", "[defaults]\ndeadline = 0.5\n"))
    git(repo, "commit", "-q", "-am", "a deadline")
    time.sleep(0.6)  # the run's clock started with `execute`
    result = cli(repo, "merge")
    assert result.code == 1, result.out + result.err
    assert "deadline reached" in result.out
    assert "no rework starts; left as they are: beta" in result.out
    assert statuses(repo) == {"alpha": "merged", "beta": "conflict"}
    assert tracker(repo)["lanes"]["beta"]["attempts"] == 1  # its agent never ran again
    assert "stopped starting lanes: deadline reached" in " ".join(cli(repo, "status").out.split())
