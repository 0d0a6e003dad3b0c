"""`[merge] on_conflict = "rerun"` on a real project: lanes run real code-changing tools
(ruff's formatter and fixers) over the same files of pallets/click (its released source,
tests included, fetched once from the package registry into a cache), with click's own
tests as `[merge] verify`. Lanes that conflict are started again from the
new base, and every lane ends merged with the tests passing on the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from exec_helpers import IDENTITY, add_lanes, cli, git, statuses, tracker

CLICK = "click==8.1.8"  # a real project we did not write, with its own test suite
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "orchestree-tests"
PYTHON = sys.executable
RUFF = str(Path(sys.executable).parent / "ruff")
# A fast subset of click's suite, with click imported from the checkout under test.
TESTS = "tests/test_basic.py tests/test_imports.py tests/test_commands.py tests/test_formatting.py"
# click 8.1.8 parametrizes with an iterator, which newer pytest warns of (and its
# settings make warnings errors): that warning, and only it, is let through.
QUIET = "-W ignore::pytest.PytestRemovedIn10Warning"
VERIFY = f"PYTHONPATH=src {PYTHON} -m pytest -q -x -p no:cacheprovider {QUIET} {TESTS}"
TOOLS = {  # five deterministic code-changing programs over the same files
    "format-79": f"{RUFF} format --isolated --line-length 79 src/click",
    "sort-imports": f"{RUFF} check --isolated --select I --fix --exit-zero src/click",
    "trailing-commas": f"{RUFF} check --isolated --select COM --fix --exit-zero src/click",
    "returns": f"{RUFF} check --isolated --select RET --fix --exit-zero src/click",
    "pyupgrade": f"{RUFF} check --isolated --select UP --fix --exit-zero src/click",
}


def click_source() -> Path:
    """click's released source tree (an sdist carries its tests), downloaded once."""
    name = CLICK.replace("==", "-")
    tree = CACHE / name
    if not tree.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [PYTHON, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             CLICK, "-d", str(CACHE)],
            check=True,
        )  # fmt: skip
        with tarfile.open(CACHE / f"{name}.tar.gz") as sdist:
            sdist.extractall(CACHE, filter="data")
    return tree


def click_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(key, raising=False)
    repo = tmp_path / "click"
    shutil.copytree(click_source(), repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "commit.gpgsign", "false")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{CLICK} as released")
    (repo / "orchestree.toml").write_text(
        '[defaults]\nagent = "shell"\nkill_grace_s = 0.5\nmax_parallel = 2\n'
        f'\n[merge]\nverify = "{VERIFY}"\non_conflict = "rerun"\nmax_rework = 4\n',
        encoding="utf-8",
    )
    git(repo, "add", "orchestree.toml")
    git(repo, "commit", "-q", "-m", "orchestree settings")
    assert cli(repo, "init").code == 0
    return repo


def test_rerun_lands_every_real_tool_lane_and_the_suite_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = click_repo(tmp_path, monkeypatch)
    add_lanes(repo, {lane: {"tasks": [command]} for lane, command in TOOLS.items()})
    assert cli(repo, "execute").code == 0
    before = git(repo, "rev-parse", "main")
    # The lanes really overlap: without rerun, merge would leave some in conflict.
    check = cli(repo, "merge", "--check", "--no-rework")
    assert check.code == 1, check.out
    assert "would conflict" in check.out

    result = cli(repo, "merge")

    assert result.code == 0, result.out + result.err
    assert set(statuses(repo).values()) == {"merged"}
    lanes = tracker(repo)["lanes"]
    reruns = {k: lane["rework"]["count"] for k, lane in lanes.items() if lane["rework"]}
    assert reruns, "no lane needed a rerun"
    assert all(lanes[k]["rework"]["reason"] == "rerun" for k in reruns)
    for lane_id in reruns:  # each earlier attempt's head is kept
        assert git(repo, "for-each-ref", f"refs/orchestree/attempts/{lane_id}/")
    for lane_id, lane in lanes.items():  # every lane's own last attempt is in main
        assert lane["head_commit"], lane_id
        git(repo, "merge-base", "--is-ancestor", lane["head_commit"], "main")
    scratch = tmp_path / "check"
    git(repo, "worktree", "add", "-q", "--detach", str(scratch), "main")
    suite = subprocess.run(
        VERIFY, shell=True, cwd=scratch, capture_output=True, text=True, check=False
    )
    assert suite.returncode == 0, suite.stdout[-2000:]
    assert git(repo, "rev-list", "--count", f"{before}..main") != "0"
