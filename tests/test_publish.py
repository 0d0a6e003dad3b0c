"""A merge killed at any moment: the base stays old or new, and the next merge finishes.

The crash tests run `orchestree merge` as a real process in its own session and
SIGKILL the whole session at chosen moments: while `[merge] verify` runs, and inside
the fast-forward, held there by a `reference-transaction` hook on the base branch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanes_helpers import add_lanes, finish_lane, is_clean, make_repo, sh, write
from orchestree import git
from orchestree.errors import EnvironmentRefused
from orchestree.layout import Layout
from orchestree.merge import publish
from orchestree.repo import open_repo

BASE = {"a.txt": "one\n", "gone.txt": "to be deleted\n"}


def tracker(root: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((root / ".orchestration" / "tracker.json").read_text())


def three_lanes(root: Path) -> dict[str, str]:
    add_lanes(root, {"x": {}, "y": {}, "z": {}})
    return {
        "x": finish_lane(root, "x", {"a.txt": "one\nx\n"}),
        "y": finish_lane(root, "y", {"y.txt": "y\n"}),
        "z": finish_lane(root, "z", {"sub/z.txt": "z\n"}),
    }


def start_merge(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestree", "merge", "--repo", str(root)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(proc: subprocess.Popen[bytes], marker: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, "merge ended before reaching the kill point"
        assert time.monotonic() < deadline, "merge never reached the kill point"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def hold_base_update(root: Path, marker: Path, state: str) -> None:
    """A hook that, once, stops git at `state` of the transaction moving main."""
    hook = root / ".git" / "hooks" / "reference-transaction"
    hook.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "{state}" ] || exit 0\n'
        "grep -q ' refs/heads/main$' || exit 0\n"
        f"[ -e {marker} ] && exit 0\n"
        f"touch {marker}\n"
        "sleep 60\n"
    )
    hook.chmod(0o755)


def finish_and_check(root: Path, heads: dict[str, str], old: str) -> str:
    code = subprocess.run(
        [sys.executable, "-m", "orchestree", "merge", "--repo", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert code.returncode == 0, code.stdout + code.stderr
    new = sh(root, "rev-parse", "main")
    assert git.is_ancestor(root, old, new)
    lanes = tracker(root)["lanes"]
    for lane_id, head in heads.items():
        assert lanes[lane_id]["status"] == "merged"
        assert git.is_ancestor(root, head, new)
        assert sh(root, "rev-parse", f"{lanes[lane_id]['merge']['commit']}^2") == head
    assert is_clean(root)
    assert (root / "a.txt").read_text() == "one\nx\n"
    assert (root / "sub" / "z.txt").exists()
    assert not (root / ".orchestration" / "merge-journal.json").exists()
    assert [t.path for t in git.worktree_list(root) if t.path.name.startswith("verify-")] == []
    return code.stdout


def test_killed_during_verify_leaves_old_base_and_next_merge_completes(tmp_path: Path) -> None:
    marker = tmp_path / "verifying"
    toml = f'[merge]\nverify = "test -e {marker} || {{ touch {marker}; sleep 60; }}"\n'
    root = make_repo(tmp_path / "repo", BASE, toml=toml)
    heads = three_lanes(root)
    old = sh(root, "rev-parse", "main")

    kill_when(start_merge(root), marker)

    assert sh(root, "rev-parse", "main") == old
    assert is_clean(root)
    assert all(lane["status"] == "completed" for lane in tracker(root)["lanes"].values())
    finish_and_check(root, heads, old)


@pytest.mark.parametrize("state", ["prepared", "committed"])
def test_killed_inside_the_fast_forward_next_merge_completes(tmp_path: Path, state: str) -> None:
    root = make_repo(tmp_path / "repo", BASE)
    heads = three_lanes(root)
    sh(root, "rm", "-q", "gone.txt")
    sh(root, "commit", "-q", "-m", "drop gone.txt")
    old = sh(root, "rev-parse", "main")
    marker = tmp_path / "publishing"
    hold_base_update(root, marker, state)

    kill_when(start_merge(root), marker)

    after_kill = sh(root, "rev-parse", "main")
    assert not (root / ".git" / "MERGE_HEAD").exists()
    assert not (root / ".git" / "index.lock").exists()
    journal = publish.read_journal(Layout(root))
    assert journal is not None
    assert after_kill == (journal.old if state == "prepared" else journal.new)
    if state == "committed":  # the ref moved last: clean at the new commit already
        assert is_clean(root)
    finish_and_check(root, heads, old)
    if state == "committed":  # the next merge only recorded what had been published
        assert sh(root, "rev-parse", "main") == after_kill


def test_journal_with_untouched_files_is_dropped(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", BASE)
    heads = three_lanes(root)
    old = sh(root, "rev-parse", "main")
    publish.write_journal(Layout(root), publish.Journal("main", str(root), old, heads["x"]))

    assert publish.recover(Layout(root), root) is None

    assert sh(root, "rev-parse", "main") == old
    assert publish.read_journal(Layout(root)) is None


def test_half_done_fast_forward_is_finished(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", BASE)
    old = sh(root, "rev-parse", "main")
    write(root, {"a.txt": "new a\n", "b.txt": "new b\n"})
    sh(root, "rm", "-q", "gone.txt")
    sh(root, "add", "-A")
    sh(root, "commit", "-q", "-m", "next")
    new = sh(root, "rev-parse", "main")
    sh(root, "reset", "-q", "--hard", old)
    write(root, {"a.txt": "new a\n"})  # a.txt written, b.txt not yet, gone.txt still there
    publish.write_journal(Layout(root), publish.Journal("main", str(root), old, new))

    note = publish.recover(Layout(root), root)

    assert note is not None
    assert "finished an interrupted merge" in note
    assert sh(root, "rev-parse", "main") == new
    assert is_clean(root)
    assert (root / "b.txt").read_text() == "new b\n"
    assert not (root / "gone.txt").exists()


def test_file_edited_after_the_crash_is_left_alone(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", BASE)
    old = sh(root, "rev-parse", "main")
    write(root, {"a.txt": "new a\n"})
    sh(root, "commit", "-q", "-am", "next")
    new = sh(root, "rev-parse", "main")
    sh(root, "reset", "-q", "--hard", old)
    write(root, {"a.txt": "the user typed this after the crash\n"})
    publish.write_journal(Layout(root), publish.Journal("main", str(root), old, new))

    with pytest.raises(EnvironmentRefused, match=r"a\.txt"):
        publish.recover(Layout(root), root)

    assert (root / "a.txt").read_text() == "the user typed this after the crash\n"
    assert sh(root, "rev-parse", "main") == old


def test_publish_without_a_checkout_is_compare_and_swap(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", BASE)
    old = sh(root, "rev-parse", "main")
    sh(root, "branch", "side")
    write(root, {"a.txt": "two\n"})
    sh(root, "commit", "-q", "-am", "two")
    new = sh(root, "rev-parse", "main")
    layout = open_repo(root).layout

    assert publish.publish(layout, root, "side", new, old) is False  # side is not at `new`
    assert sh(root, "rev-parse", "side") == old
    assert publish.publish(layout, root, "side", old, new) is True
    assert sh(root, "rev-parse", "side") == new
