"""`orchestree monitor` and the seed's `monitor_orchestration.py`, end to end, on a
tracker written by a real run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exec_helpers import add_lanes, cli, make_repo, statuses

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(
        repo,
        {
            "builds": {"name": "Builds", "tasks": ["echo built > built.txt"]},
            "breaks": {"name": "Breaks", "tasks": ["exit 4"]},
            "waits": {"tasks": ["true"], "depends_on": ["breaks"]},
        },
    )
    assert cli(repo, "execute").code == 1
    assert statuses(repo) == {"builds": "completed", "breaks": "failed", "waits": "blocked"}
    return repo


def test_monitor_once_prints_one_frame_of_the_real_run(ran: Path) -> None:
    result = cli(ran, "monitor", "--once")
    assert result.code == 0, result.err
    frame = result.out
    for text in ("builds", "breaks", "waits", "completed", "failed", "blocked"):
        assert text in frame
    assert "agent-breaks.log" in frame, "a failure names its log"
    assert "Traceback" not in result.err


def test_the_seed_monitor_script_prints_the_same_frame(ran: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "monitor_orchestration.py"), "--once"],
        cwd=ran,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "builds" in done.stdout
    assert "blocked" in done.stdout


def test_monitor_outside_an_initialised_repository_says_so(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "bare")], check=True)
    result = cli(tmp_path / "bare", "monitor", "--once")
    assert result.code == 2
    assert "orchestree init" in result.err
    assert len(result.err.strip().splitlines()) == 1
