"""Rework (DESIGN.md §13): a conflicting lane goes back to its own agent, with the base
merged into its worktree and the markers left, and merges in the same `merge` run.

Real repositories, real `execute` of scripted agents, the real CLI. The agent's
behaviour on a rework is picked by a file outside the repository (`mode`), so one test
can change it between runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from exec_helpers import (
    ORCHESTREE,
    add_lanes,
    agent_config,
    cli,
    git,
    make_repo,
    statuses,
    tracker,
    wait_for,
    write_script,
)
from orchestree import rework
from orchestree.config import load_config
from orchestree.errors import UserError
from orchestree.repo import open_repo

if TYPE_CHECKING:  # tests/chaos has a conftest too: import the name for typing only
    from conftest import FakeAgents

BASE = {"shared.txt": "top\nmiddle\nbottom\n"}

# First attempt: put the lane's own word on the middle line of shared.txt (so two lanes
# conflict) and a file of its own. A rework (ORCHESTREE_REWORK set): record what it was
# given, then act as FOLDER/mode says: resolve (keep both sides), lazy (leave the
# markers), abort (drop the merge), slow (wait to be stopped).
AGENT = """
lane = sys.argv[1]
folder = Path(FOLDER)
reason = os.environ.get("ORCHESTREE_REWORK")
if not reason:
    text = Path("shared.txt").read_text().replace("middle", f"middle {lane}")
    Path("shared.txt").write_text(text)
    Path(f"{lane}.txt").write_text(lane + "\\n")
    sys.exit(0)
details = json.loads(Path(os.environ["ORCHESTREE_REWORK_FILE"]).read_text())
prompt = Path(os.environ["ORCHESTREE_PROMPT_FILE"]).read_text()
seen = {"reason": reason, "details": details, "prompt": prompt}
with (folder / f"{lane}.reworks").open("a") as fh:
    fh.write(json.dumps(seen) + "\\n")
mode = (folder / "mode").read_text().strip()
if mode == "slow":
    (folder / "started").write_text("yes")
    time.sleep(120)
if mode == "abort":
    subprocess.run(["git", "merge", "--abort"], check=True)
    sys.exit(0)
if mode == "resolve":
    for name in details["files"]:
        lines = Path(name).read_text().splitlines(keepends=True)
        keep = [x for x in lines if not x.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
        Path(name).write_text("".join(keep))
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "commit", "-q", "-m", "keep both sides"], check=True)
"""


def rework_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merge: str) -> Path:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "mode").write_text("resolve")
    script = write_script(folder / "agent.py", f"FOLDER = {str(folder)!r}\n{AGENT}")
    config = agent_config("scripted", script, extra=f"\n[merge]\n{merge}\n")
    config = config.replace('agent = "shell"', 'agent = "scripted"')
    repo = make_repo(tmp_path, monkeypatch, config=config, files=BASE)
    add_lanes(
        repo,
        {
            "alpha": {"priority": "high", "name": "Alpha", "tasks": ["mark the middle alpha"]},
            "beta": {"priority": "low", "name": "Beta", "tasks": ["mark the middle beta"]},
        },
    )
    assert cli(repo, "execute").code == 0
    assert statuses(repo) == {"alpha": "completed", "beta": "completed"}
    return repo


def mode(repo: Path, value: str) -> None:
    (repo.parent / "agent" / "mode").write_text(value)


def reworks_seen(repo: Path, lane: str) -> list[dict[str, Any]]:
    path = repo.parent / "agent" / f"{lane}.reworks"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def markers_on_main(repo: Path) -> str:
    """Conflict-marker lines anywhere in main's tree ("" when there are none)."""
    grep = ["git", "grep", "-n", "-E", "^(<<<<<<<|>>>>>>>)", "main", "--", "."]
    found = subprocess.run(grep, cwd=repo, capture_output=True, text=True, check=False)
    assert found.returncode in (0, 1), found.stderr
    return found.stdout


def test_a_conflict_is_reworked_by_its_agent_and_merged_in_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"\nmax_rework = 2')
    beta_head = git(repo, "rev-parse", "lane-beta")

    result = cli(repo, "merge")

    assert result.code == 0, result.out + result.err
    assert statuses(repo) == {"alpha": "merged", "beta": "merged"}
    shared = git(repo, "show", "main:shared.txt")
    assert "middle alpha" in shared
    assert "middle beta" in shared
    assert git(repo, "show", "main:alpha.txt") == "alpha"
    assert git(repo, "show", "main:beta.txt") == "beta"
    assert markers_on_main(repo) == ""
    assert "beta: conflict rework 1 of 2 (files: shared.txt)" in result.out
    # What the agent was given: the reason, the files, the lane it meets and its tasks.
    (seen,) = reworks_seen(repo, "beta")
    assert seen["reason"] == "conflict"
    details = seen["details"]
    assert details["reason"] == "conflict"
    assert details["files"] == ["shared.txt"]
    assert details["others"] == [
        {"lane": "alpha", "name": "Alpha", "tasks": ["mark the middle alpha"]}
    ]
    assert details["base"] == git(repo, "rev-parse", "main^")  # main after alpha merged
    assert "shared.txt" in seen["prompt"]
    assert "lane alpha" in seen["prompt"]
    assert "mark the middle alpha" in seen["prompt"]
    # The earlier attempt's head is kept, and the lane's record counts the rework.
    assert git(repo, "rev-parse", "refs/orchestree/attempts/beta/1") == beta_head
    lane = tracker(repo)["lanes"]["beta"]
    assert lane["rework"]["count"] == 1
    assert lane["attempts"] == 2
    assert not (repo / "shared.txt").read_text().count("<<<<<<<")


def test_a_rework_that_leaves_markers_fails_and_bounds_end_it_in_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"\nmax_rework = 2')
    mode(repo, "lazy")  # the agent leaves the markers in place; orchestree commits them

    result = cli(repo, "merge")

    assert result.code == 1, result.out + result.err
    assert statuses(repo) == {"alpha": "merged", "beta": "conflict"}
    assert len(reworks_seen(repo, "beta")) == 2  # max_rework, then no more
    lane = tracker(repo)["lanes"]["beta"]
    assert lane["merge"]["conflicts"] == ["shared.txt"]
    assert lane["error"] == "rework 2 failed: it left conflict markers in shared.txt"
    assert "beta" in result.out
    assert "left conflict markers in shared.txt" in result.out
    assert markers_on_main(repo) == ""
    assert "middle beta" not in git(repo, "show", "main:shared.txt")
    # The lane branch holds the markers it was left with: nothing is lost.
    assert "<<<<<<<" in git(repo, "show", "lane-beta:shared.txt")
    assert git(repo, "rev-parse", "--verify", "refs/orchestree/attempts/beta/2")


def test_a_rework_that_drops_the_merge_of_the_base_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"\nmax_rework = 1')
    mode(repo, "abort")

    result = cli(repo, "merge")

    assert result.code == 1, result.out + result.err
    assert statuses(repo) == {"alpha": "merged", "beta": "conflict"}
    error = tracker(repo)["lanes"]["beta"]["error"]
    assert error.startswith("rework 1 failed: the lane does not contain the merge of ")
    assert len(reworks_seen(repo, "beta")) == 1


def test_no_rework_only_reports_and_a_later_merge_reworks_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"')

    check = cli(repo, "merge", "--check")
    assert check.code == 1
    assert "lane beta would go to rework (1 of 2)" in check.out
    result = cli(repo, "merge", "--no-rework")

    assert result.code == 1
    assert statuses(repo) == {"alpha": "merged", "beta": "conflict"}
    assert reworks_seen(repo, "beta") == []
    assert tracker(repo)["lanes"]["beta"]["rework"] is None

    again = cli(repo, "merge")  # rework on: the conflict left behind goes to its agent

    assert again.code == 0, again.out + again.err
    assert statuses(repo) == {"alpha": "merged", "beta": "merged"}
    assert [seen["details"]["files"] for seen in reworks_seen(repo, "beta")] == [["shared.txt"]]
    assert markers_on_main(repo) == ""


def test_ctrl_c_during_a_rework_leaves_the_base_and_the_lane_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"\nmax_rework = 1')
    mode(repo, "slow")
    proc = subprocess.Popen(
        [ORCHESTREE, "merge", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    started = repo.parent / "agent" / "started"
    wait_for(started.exists, timeout=60, what="the rework agent to start")
    main_then = git(repo, "rev-parse", "main")
    assert "middle alpha" in git(repo, "show", "main:shared.txt")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    assert git(repo, "rev-parse", "main") == main_then  # the rework never touched main
    assert markers_on_main(repo) == ""
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert statuses(repo)["beta"] == "cancelled"
    assert "`orchestree merge` resumes the rework" in out + err

    mode(repo, "resolve")
    again = cli(repo, "merge")

    assert again.code == 0, again.out + again.err
    assert statuses(repo) == {"alpha": "merged", "beta": "merged"}
    assert "resuming its interrupted rework" in again.out
    shared = git(repo, "show", "main:shared.txt")
    assert "middle alpha" in shared
    assert "middle beta" in shared
    assert markers_on_main(repo) == ""
    assert tracker(repo)["lanes"]["beta"]["rework"]["count"] == 1  # resumed, not a new one


def test_a_rework_whose_agent_cannot_log_in_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents: FakeAgents
) -> None:
    config = (
        '[defaults]\nagent = "claude"\nkill_grace_s = 0.5\n'
        '\n[merge]\non_conflict = "rework"\nmax_rework = 2\n'
    )
    repo = make_repo(tmp_path, monkeypatch, config=config, files={"shared.txt": "x\n"})
    add_lanes(
        repo,
        {
            "first": {
                "priority": "high",
                "agent": "shell",
                "tasks": ["printf 'A\\n' > shared.txt"],
            },
            "second": {"priority": "low", "tasks": ["append a line to shared.txt"]},
        },
    )
    fake_agents.set(edit="shared.txt")
    assert cli(repo, "execute").code == 0
    session = tracker(repo)["lanes"]["second"]["session_id"]
    assert session
    fake_agents.set(mode="not-logged-in")

    result = cli(repo, "merge")

    assert result.code == 1, result.out + result.err
    assert statuses(repo) == {"first": "merged", "second": "failed"}
    lane = tracker(repo)["lanes"]["second"]
    assert "Not logged in" in lane["error"]
    assert "is not logged in" in result.out
    assert "/login" in result.out
    argv = fake_agents.runs()["claude-second"]["argv"]
    assert argv[argv.index("--resume") + 1] == session  # its own session, resumed
    assert fake_agents.runs()["claude-second"]["env"]["ORCHESTREE_REWORK"] == "conflict"
    assert git(repo, "show", "main:shared.txt") == "A"  # nothing of the rework reached main


VERIFY_AGENT = """
lane = sys.argv[1]
reason = os.environ.get("ORCHESTREE_REWORK")
if not reason:
    Path(f"{lane}.txt").write_text("work\\n")
    if lane == "breaker":
        Path("broken.txt").write_text("this breaks the check\\n")
    sys.exit(0)
details = json.loads(Path(os.environ["ORCHESTREE_REWORK_FILE"]).read_text())
Path(FOLDER, "seen.json").write_text(json.dumps({"reason": reason, "details": details}))
Path("broken.txt").unlink()
subprocess.run(["git", "commit", "-q", "-am", "fix what the check said"], check=True)
"""

CHECK = """import pathlib, sys
if pathlib.Path("broken.txt").exists():
    sys.exit("BROKEN: broken.txt exists")
"""


def test_a_failed_verify_goes_back_to_the_agent_with_the_output_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    script = write_script(folder / "agent.py", f"FOLDER = {str(folder)!r}\n{VERIFY_AGENT}")
    verify = f'verify = "{sys.executable} check.py"\non_verify_fail = "rework"\n'
    config = agent_config("scripted", script, extra=f"\n[merge]\n{verify}")
    config = config.replace('agent = "shell"', 'agent = "scripted"')
    repo = make_repo(tmp_path, monkeypatch, config=config, files={"check.py": CHECK})
    add_lanes(repo, {"fine": {"priority": "high"}, "breaker": {"priority": "low"}})
    assert cli(repo, "execute").code == 0

    said: list[str] = []  # the library call `merge` makes, for its report's outcomes
    report = rework.merge_until_done(open_repo(repo), report=said.append)

    assert report.exit_code == 0, said
    assert statuses(repo) == {"fine": "merged", "breaker": "merged"}
    # Each lane's last outcome, with how many times it went back (merge --json's reworks).
    assert {o.lane_id: (o.status, o.reworks) for o in report.outcomes} == {
        "fine": ("merged", 0),
        "breaker": ("merged", 1),
    }
    assert report.old != report.new
    seen = json.loads((folder / "seen.json").read_text())
    assert seen["reason"] == "verify"
    assert "BROKEN: broken.txt exists" in seen["details"]["verify_tail"]
    assert "↻ breaker: verify rework 1 of 2" in said
    assert git(repo, "show", "main:breaker.txt") == "work"
    files = git(repo, "ls-tree", "--name-only", "main").splitlines()
    assert "broken.txt" not in files


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ('on_conflict = "fix"', "merge.on_conflict"),
        ('on_verify_fail = "rerun"', "merge.on_verify_fail"),
        ("max_rework = -1", "merge.max_rework"),
        ('max_rework = "2"', "merge.max_rework"),
    ],
)
def test_rework_settings_are_validated(tmp_path: Path, setting: str, named: str) -> None:
    (tmp_path / "orchestree.toml").write_text(f"[merge]\n{setting}\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"key '{named}'"):
        load_config(tmp_path)


def test_rework_settings_default_to_report(tmp_path: Path) -> None:
    merge = load_config(tmp_path).merge
    assert (merge.on_conflict, merge.on_verify_fail, merge.max_rework) == ("report", "report", 2)


def test_a_worktree_with_uncommitted_changes_is_not_reworked_and_nothing_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = rework_repo(tmp_path, monkeypatch, 'on_conflict = "rework"')
    edited = repo / ".worktrees" / "agent-beta" / "beta.txt"
    edited.write_text("a person's edit, not committed\n")
    head = git(repo, "rev-parse", "lane-beta")

    result = cli(repo, "merge")

    assert result.code == 1, result.out + result.err
    assert "! beta: not reworked: lane 'beta': its worktree has uncommitted changes" in result.out
    assert statuses(repo) == {"alpha": "merged", "beta": "conflict"}
    assert edited.read_text() == "a person's edit, not committed\n"
    assert git(repo, "rev-parse", "lane-beta") == head
    assert reworks_seen(repo, "beta") == []
