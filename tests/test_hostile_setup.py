"""Issue 20: what orchestree sets up for agents cannot be turned against the user.

`[worktree] root` must be an untracked folder inside the repository (one line, exit 2,
nothing changed), and the tracker helper the Claude preset pre-approves is a
read-only file outside every worktree, restored before each lane starts.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import orchestree.access_tracker
from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker
from helpers import assert_one_line

EXCLUDE = Path(".git") / "info" / "exclude"


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed repository with a tracked `src/`, initialised for orchestree."""
    repo = make_repo(tmp_path, monkeypatch, files={"src/app.py": "print('hi')\n"})
    return repo


@pytest.mark.parametrize(
    ("root", "why"),
    [
        ("src", "a folder git tracks"),
        (".git", "belongs to git"),
        (".git/lanes", "belongs to git"),
        (".orchestration", "belongs to orchestree"),
        (".orchestration/wt", "belongs to orchestree"),
        ("..", "not a folder inside the repository"),
        ("../lanes", "not a folder inside the repository"),
        ("build/../..", "not a folder inside the repository"),
        (".", "not a folder inside the repository"),
        ("{outside}", "not a folder inside the repository"),
    ],
)
def test_worktree_root_must_be_an_untracked_folder_inside_the_repository(
    bare: Path, tmp_path: Path, root: str, why: str
) -> None:
    root = root.replace("{outside}", str(tmp_path / "elsewhere"))
    (bare / "orchestree.toml").write_text(
        BASE_CONFIG + f'\n[worktree]\nroot = "{root}"\n', encoding="utf-8"
    )
    exclude = (bare / EXCLUDE).read_bytes()
    # Whether git tracks it is asked where it matters (init, execute); the path alone
    # is checked by every command.
    add = cli(bare, "add-lane", "x", '{"tasks": ["echo x > x.txt"]}')
    assert add.code == (0 if root == "src" else 2)
    for args in (["init"], ["execute"]):
        result = cli(bare, *args)
        assert result.code == 2, (args, result.out)
        assert_one_line(result.err, "[worktree] root", why, "untracked folder inside")
    # Before: `src` was excluded from git and its new files never committed.
    assert (bare / EXCLUDE).read_bytes() == exclude
    assert git(bare, "branch", "--list", "lane-*") == ""
    assert not (tmp_path / "elsewhere").exists()
    assert not (bare / "src" / "agent-x").exists()
    if root == "src":
        assert tracker(bare)["lanes"]["x"]["status"] == "pending"


def test_an_untracked_nested_root_is_accepted(bare: Path) -> None:
    (bare / "orchestree.toml").write_text(
        BASE_CONFIG + '\n[worktree]\nroot = "build/lanes"\n', encoding="utf-8"
    )
    assert cli(bare, "init").code == 0
    assert "/build/lanes" in (bare / EXCLUDE).read_text(encoding="utf-8").splitlines()


def test_the_preapproved_helper_is_read_only_outside_the_worktree_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first lane's agent rewrites orchestree's helper (as a person with a shell
    # could); the next lane starts with the genuine one again, and each worktree
    # still has the seed's copy at its root.
    repo = make_repo(tmp_path, monkeypatch)
    helper = repo / ".orchestration" / "access_tracker.py"
    genuine = Path(orchestree.access_tracker.__file__).read_bytes()
    assert helper.read_bytes() == genuine
    assert stat.S_IMODE(helper.stat().st_mode) == 0o555
    tamper = (
        'h="$(dirname "$ORCHESTREE_TRACKER")/access_tracker.py"; '
        'chmod u+w "$h"; echo "import os; os.system(\'id\')" > "$h"'
    )
    add_lanes(
        repo,
        {
            "first": {"tasks": [tamper]},
            "second": {"tasks": ['cmp "$(dirname "$ORCHESTREE_TRACKER")/access_tracker.py" '
                                 "access_tracker.py && echo same > same.txt"],
                       "depends_on": ["first"]},
        },
    )  # fmt: skip

    result = cli(repo, "execute")

    assert result.code == 0, result.out
    assert git(repo, "show", "lane-second:same.txt") == "same"
    assert helper.read_bytes() == genuine
    assert stat.S_IMODE(helper.stat().st_mode) == 0o555
    assert (repo / ".worktrees" / "agent-second" / "access_tracker.py").read_bytes() == genuine
    prompt = (repo / ".orchestration" / "runs" / "second.prompt.md").read_text()
    assert f"python3 {helper} " in prompt
