"""Running lanes survive a wall-clock step (issue 13, must-show 1 and 2).

Real `orchestree execute` runs in a private mount namespace where `/proc/stat` is a
copy whose `btime` the test moves while three 6-second lanes run (`clock_helpers`).
Identity by a wall-clock start time failed every running lane here; identity by start
ticks since boot and the boot id does not notice.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clock_helpers import btime, in_namespace, stat_copy, step_btime
from exec_helpers import (
    ORCHESTREE,
    add_lanes,
    agent_config,
    cli,
    make_repo,
    spawn,
    statuses,
    tracker,
    wait_for,
    write_script,
)

LANES = ("one", "two", "three")
AGENT_S = 6.0


def _repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Three lanes of an agent that runs AGENT_S seconds and notes its start and end."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = write_script(
        tmp_path / "six_seconds.py",
        f"""
lane = sys.argv[1]
marks = Path({str(marks)!r})
with (marks / f"{{lane}}.start").open("a") as fh:
    fh.write(f"{{os.getpid()}}\\n")
time.sleep({AGENT_S})
Path(f"{{lane}}.txt").write_text("done\\n")
(marks / f"{{lane}}.end").write_text("ran to its end\\n")
""",
    )
    repo = make_repo(tmp_path, monkeypatch, agent_config("six", script))
    add_lanes(repo, {lane: {"agent": "six"} for lane in LANES})
    return repo, marks


def _orchestree(copy: Path, repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        in_namespace(copy, [ORCHESTREE, *args, "--repo", str(repo)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _all_started(marks: Path) -> bool:
    return all((marks / f"{lane}.start").exists() for lane in LANES)


def _runs(marks: Path, lane: str) -> int:
    return len((marks / f"{lane}.start").read_text().splitlines())


def _assert_every_agent_ran_once_to_its_end(repo: Path, marks: Path) -> None:
    assert statuses(repo) == dict.fromkeys(LANES, "completed")
    for lane in LANES:
        assert _runs(marks, lane) == 1, f"lane {lane}'s agent ran more than once"
        assert (marks / f"{lane}.end").exists(), f"lane {lane}'s agent was ended early"
        assert tracker(repo)["lanes"][lane]["attempts"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("step_s", [1, -1, 3600], ids=["+1s", "-1s", "+1h"])
def test_running_lanes_survive_a_clock_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step_s: int
) -> None:
    repo, marks = _repo(tmp_path, monkeypatch)
    copy = stat_copy(tmp_path)
    before = btime(copy)
    run = _orchestree(copy, repo, "execute", "--max-parallel", "3")
    try:
        wait_for(lambda: _all_started(marks), 30, "three agents to start")
        step_btime(copy, step_s)
        assert btime(copy) == before + step_s
        # The monitors judge the same identity: no "process gone" after the step.
        monitor = subprocess.run(
            in_namespace(copy, [ORCHESTREE, "monitor", "--once", "--repo", str(repo)]),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert monitor.returncode == 0, monitor.stderr
        assert "running" in monitor.stdout
        assert "is gone" not in monitor.stdout
        assert "another process" not in monitor.stdout
        out, err = run.communicate(timeout=90)
    finally:
        run.kill()
        run.communicate()
    assert run.returncode == 0, err + out
    _assert_every_agent_ran_once_to_its_end(repo, marks)


@pytest.mark.slow
def test_resume_after_a_sigkill_and_a_clock_step_adopts_the_running_supervisors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, marks = _repo(tmp_path, monkeypatch)
    copy = stat_copy(tmp_path)
    first = _orchestree(copy, repo, "execute", "--max-parallel", "3")
    try:
        wait_for(lambda: _all_started(marks), 30, "three agents to start")
        wait_for(
            lambda: all(a.get("pid") for a in tracker(repo)["agents"].values()),
            30,
            "the supervisors to be recorded",
        )
    finally:
        first.kill()  # SIGKILL: the supervisors, in sessions of their own, run on
        first.communicate()
    step_btime(copy, 3600)
    second = _orchestree(copy, repo, "execute", "--max-parallel", "3")
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0, err + out
    for lane in LANES:
        assert f"{lane}: adopted from an earlier run" in out
    _assert_every_agent_ran_once_to_its_end(repo, marks)


@pytest.mark.slow
def test_a_tracker_of_the_released_version_resumes_and_adopts_its_supervisors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents recorded with a wall-clock `pid_started` (and handles carrying it), as the
    released version wrote them, that no longer matches (a clock step since): adopted."""
    repo, marks = _repo(tmp_path, monkeypatch)
    first = spawn(repo, "execute", "--max-parallel", "3")
    try:
        wait_for(lambda: _all_started(marks), 30, "three agents to start")
        wait_for(
            lambda: all(a.get("handle") for a in tracker(repo)["agents"].values()),
            30,
            "the supervisors to be recorded",
        )
    finally:
        first.kill()
        first.communicate()
    legacy = {}
    for name, agent in tracker(repo)["agents"].items():
        pid = agent["pid"]
        legacy[name] = {
            "pid_ticks": None,
            "boot_id": None,
            "pid_started": 1000.0,
            "handle": f"local:{agent['lane']}:1:{pid}:1000.0",
        }
    assert cli(repo, "tracker", "update", json.dumps({"agents": legacy})).code == 0
    result = cli(repo, "execute", "--max-parallel", "3")
    assert result.code == 0, result.err + result.out
    for lane in LANES:
        assert f"{lane}: adopted from an earlier run" in result.out
    _assert_every_agent_ran_once_to_its_end(repo, marks)
