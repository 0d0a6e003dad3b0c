"""The seed's two entry points at the repository root forward to orchestree.

Their whole job is to run `orchestree` with the user's arguments in the user's
directory, so an `orchestree` on PATH that records what it was given is the honest
thing to check them against.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL_ENTRY = ROOT / "worktree_orchestrate.sh"
MONITOR_ENTRY = ROOT / "monitor_orchestration.py"
RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD"], "w") as fh:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd()}}, fh)
sys.exit(7)
"""


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "orchestree"
    fake.write_text(RECORDER.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    record = tmp_path / "record.json"
    user_repo = tmp_path / "user-repo"
    user_repo.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(record)}
    return env, record, user_repo


@pytest.mark.parametrize("entry", [SHELL_ENTRY, MONITOR_ENTRY])
def test_entry_points_are_executable(entry: Path) -> None:
    assert entry.stat().st_mode & stat.S_IXUSR


def test_the_shell_entry_runs_orchestree_with_the_arguments_where_the_user_stands(
    recorded: tuple[dict[str, str], Path, Path],
) -> None:
    env, record, user_repo = recorded
    args = ["add-lane", "custom analysis", '{"name": "Custom Analysis", "tasks": ["a b"]}']
    done = subprocess.run([str(SHELL_ENTRY), *args], cwd=user_repo, env=env, check=False)
    assert done.returncode == 7, "orchestree's exit code comes back unchanged"
    assert json.loads(record.read_text()) == {"argv": args, "cwd": str(user_repo)}


@pytest.mark.parametrize(
    "flags",
    [[], ["--once"], ["--web"], ["--web", "--host", "127.0.0.1", "--port", "5600"]],
)
def test_the_monitor_entry_runs_orchestree_monitor_with_the_same_flags(
    recorded: tuple[dict[str, str], Path, Path], flags: list[str]
) -> None:
    env, record, user_repo = recorded
    done = subprocess.run(
        ["python3", str(MONITOR_ENTRY), *flags], cwd=user_repo, env=env, check=False
    )
    assert done.returncode == 7
    assert json.loads(record.read_text()) == {"argv": ["monitor", *flags], "cwd": str(user_repo)}


@pytest.mark.parametrize("entry", [["bash", str(SHELL_ENTRY)], ["python3", str(MONITOR_ENTRY)]])
def test_without_orchestree_the_entry_points_say_how_to_install_it(
    tmp_path: Path, entry: list[str]
) -> None:
    # Debian's python3 without orchestree installed, and no orchestree on PATH.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [*entry, "status"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 3
    assert "orchestree is not installed; install it with `pip install orchestree`" in done.stderr
