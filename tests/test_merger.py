"""`orchestree merge` on real repositories: order, conflicts, dependents, verify, --check."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanes_helpers import (
    add_lanes,
    commit_on_lane,
    finish_lane,
    is_clean,
    make_repo,
    set_status,
    sh,
    write,
)
from orchestree import git
from orchestree.cli import main
from orchestree.merge import merger
from orchestree.merge.results import MergeScope
from orchestree.repo import open_repo

BASE = {"a.txt": "one\ntwo\nthree\n", "b.txt": "bee\n"}


def run_cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str]:
    code = main([*args, "--repo", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tracker(root: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((root / ".orchestration" / "tracker.json").read_text())


def snapshot(root: Path) -> tuple[str, str, bytes, str, str]:
    """Everything of the user's that `merge --check` must leave alone."""
    return (
        sh(root, "for-each-ref", "--format=%(refname) %(objectname)"),
        sh(root, "status", "--porcelain", "--untracked-files=all"),
        (root / ".orchestration" / "tracker.json").read_bytes(),
        sh(root, "worktree", "list", "--porcelain"),
        sh(root, "ls-files", "-s", "--debug"),
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", BASE)


@pytest.fixture
def rivals(repo: Path) -> Path:
    """Two lanes editing the same line (each clean against the base alone), a dependent."""
    add_lanes(
        repo,
        {
            "low": {"priority": "low", "tasks": ["say TWO"]},
            "high": {"priority": "high", "name": "High", "tasks": ["say 2", "keep it short"]},
            "after-low": {"depends_on": ["low"], "priority": "high"},
        },
    )
    finish_lane(repo, "low", {"a.txt": "one\nTWO\nthree\n"})
    finish_lane(repo, "high", {"a.txt": "one\n2\nthree\n"})
    finish_lane(repo, "after-low", {"c.txt": "see\n"}, start="lane-low")
    return repo


def test_same_line_higher_priority_merges_other_conflicts(
    rivals: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = sh(rivals, "rev-parse", "main")
    for lane in ("low", "high"):  # each is clean against the base alone
        assert git.merge_tree(rivals, old, f"lane-{lane}").tree is not None

    code, out = run_cli(capsys, rivals, "merge")

    assert code == 1
    lanes = tracker(rivals)["lanes"]
    assert lanes["high"]["status"] == "merged"
    assert lanes["low"]["status"] == "conflict"
    assert lanes["low"]["merge"]["conflicts"] == ["a.txt"]
    assert "conflicts in a.txt" in out
    assert (rivals / "a.txt").read_text() == "one\n2\nthree\n"
    assert is_clean(rivals)
    assert not (rivals / ".git" / "MERGE_HEAD").exists()
    new = sh(rivals, "rev-parse", "main")
    assert git.is_ancestor(rivals, old, new)
    assert tracker(rivals)["phase"] == 4
    assert tracker(rivals)["base_commit"] == new  # status shows where the base now is


def test_dependent_of_conflicted_lane_is_skipped(
    rivals: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli(capsys, rivals, "merge")

    assert code == 1
    after = tracker(rivals)["lanes"]["after-low"]
    assert after["status"] == "completed"
    assert after["merge"]["status"] == "skipped"
    assert "depends on low" in after["error"]
    assert "skipped" in out
    assert "after-low" in out
    assert not (rivals / "c.txt").exists()


def test_base_moves_forward_by_whole_merge_commits(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_lanes(repo, {f"l{i}": {"tasks": [f"task {i}"], "name": f"Lane {i}"} for i in range(3)})
    heads = {f"l{i}": finish_lane(repo, f"l{i}", {f"f{i}.txt": f"{i}\n"}) for i in range(3)}
    old = sh(repo, "rev-parse", "main")

    code, _ = run_cli(capsys, repo, "merge")

    assert code == 0
    chain = sh(repo, "rev-list", "--first-parent", "--parents", f"{old}..main").splitlines()
    assert len(chain) == 3  # one --no-ff merge commit per lane, nothing else
    seconds = {line.split()[2] for line in chain}
    assert seconds == set(heads.values())
    assert chain[-1].split()[1] == old
    for lane_id, head in heads.items():
        lane = tracker(repo)["lanes"][lane_id]
        assert lane["status"] == "merged"
        message = sh(repo, "log", "-1", "--format=%B", lane["merge"]["commit"])
        assert f"Merge lane-{lane_id}: Lane {lane_id[1]}" in message
        assert f"- task {lane_id[1]}" in message
        assert sh(repo, "rev-parse", f"{lane['merge']['commit']}^2") == head
    assert all((repo / f"f{i}.txt").exists() for i in range(3))
    assert is_clean(repo)


def test_verify_failure_drops_that_lane_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check = "echo checking; test ! -e bad.txt || { echo bad.txt is here; exit 3; }"
    toml = f'[merge]\nverify = "{check}"\n'
    root = make_repo(tmp_path / "repo", BASE, toml=toml)
    add_lanes(
        root,
        {
            "good": {"priority": "high"},
            "bad": {"priority": "medium"},
            "later": {"priority": "low"},
            "needs-bad": {"depends_on": ["bad"]},
        },
    )
    finish_lane(root, "good", {"good.txt": "g\n"})
    finish_lane(root, "bad", {"bad.txt": "b\n"})
    finish_lane(root, "later", {"later.txt": "l\n"})
    finish_lane(root, "needs-bad", {"nb.txt": "n\n"}, start="lane-bad")
    old = sh(root, "rev-parse", "main")

    code, out = run_cli(capsys, root, "merge")

    assert code == 1
    lanes = tracker(root)["lanes"]
    assert lanes["bad"]["status"] == "verify_failed"
    assert "bad.txt is here" in lanes["bad"]["error"]
    assert "exited 3" in lanes["bad"]["error"]
    assert lanes["needs-bad"]["merge"]["status"] == "skipped"
    assert lanes["good"]["status"] == lanes["later"]["status"] == "merged"
    assert (root / "good.txt").exists()
    assert (root / "later.txt").exists()
    assert not (root / "bad.txt").exists()
    # the later lane's merge sits directly on the good one's: bad's merge was dropped
    later = lanes["later"]["merge"]["commit"]
    assert sh(root, "rev-parse", f"{later}^1") == lanes["good"]["merge"]["commit"]
    assert sh(root, "rev-parse", f"{lanes['good']['merge']['commit']}^1") == old
    assert "bad.txt is here" in out
    assert len(git.worktree_list(root)) == 1 + 4  # the scratch worktree is gone
    assert not list((root / ".orchestration").glob("verify-*"))
    assert is_clean(root)


def test_check_predicts_and_touches_nothing(
    rivals: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(rivals)

    code, out = run_cli(capsys, rivals, "merge", "--check")

    assert code == 1
    assert snapshot(rivals) == before
    assert "would conflict" in out
    assert "low" in out
    assert "a.txt" in out
    assert "would skip" in out
    assert "would merge" in out


def test_check_exits_0_when_all_would_merge(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_lanes(repo, {"x": {}})
    finish_lane(repo, "x", {"x.txt": "x\n"})
    code, out = run_cli(capsys, repo, "merge", "--check")
    assert code == 0
    assert "would merge" in out
    assert tracker(repo)["lanes"]["x"]["status"] == "completed"


def test_lane_merged_by_hand_is_recorded_merged(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_lanes(repo, {"x": {}})
    finish_lane(repo, "x", {"x.txt": "x\n"})
    sh(repo, "merge", "-q", "--no-ff", "-m", "by hand", "lane-x")
    by_hand = sh(repo, "rev-parse", "main")

    code, out = run_cli(capsys, repo, "merge")

    assert code == 0
    lane = tracker(repo)["lanes"]["x"]
    assert lane["status"] == "merged"
    assert lane["merge"]["commit"] == by_hand
    assert sh(repo, "rev-parse", "main") == by_hand
    assert "already in main" in out


def test_lane_brought_in_by_its_dependency(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_lanes(repo, {"base-work": {}, "same": {"depends_on": ["base-work"]}})
    head = finish_lane(repo, "base-work", {"w.txt": "w\n"})
    sh(repo, "branch", "lane-same", head)
    set_status(repo, "same", "running", "completed", head=head)

    code, _ = run_cli(capsys, repo, "merge")

    assert code == 0
    lanes = tracker(repo)["lanes"]
    assert lanes["same"]["status"] == "merged"
    assert lanes["same"]["merge"]["commit"] == lanes["base-work"]["merge"]["commit"]


def test_merge_lane_merges_only_that_lane(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_lanes(repo, {"x": {}, "y": {}})
    finish_lane(repo, "x", {"x.txt": "x\n"})
    finish_lane(repo, "y", {"y.txt": "y\n"})

    code, _ = run_cli(capsys, repo, "merge", "--lane", "y")

    assert code == 0
    lanes = tracker(repo)["lanes"]
    assert lanes["y"]["status"] == "merged"
    assert lanes["x"]["status"] == "completed"
    assert (repo / "y.txt").exists()
    assert not (repo / "x.txt").exists()


def test_resolved_conflict_merges_with_merge_lane(
    rivals: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(capsys, rivals, "merge")
    worktree = open_repo(rivals).layout.worktree("low")
    sh(worktree, "merge", "-q", "main", "-X", "ours", "-m", "resolve with main")

    code, out = run_cli(capsys, rivals, "merge", "--lane", "low")

    assert code == 0, out
    lanes = tracker(rivals)["lanes"]
    assert lanes["low"]["status"] == "merged"
    assert lanes["low"]["merge"]["conflicts"] == []
    assert (rivals / "a.txt").read_text() == "one\nTWO\nthree\n"
    code, out = run_cli(capsys, rivals, "merge")  # the skipped dependent now goes in
    assert code == 0, out
    assert tracker(rivals)["lanes"]["after-low"]["status"] == "merged"
    assert is_clean(rivals)


def test_base_moving_during_merge_is_replanned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    flag = tmp_path / "moved"
    # The verify command commits to main behind the merge's back, once.
    toml = (
        f'[merge]\nverify = "test -e {flag} || {{ touch {flag} && '
        f"git -C {root} commit -q --allow-empty -m 'meanwhile'; }}\"\n"
    )
    make_repo(root, BASE, toml=toml)
    add_lanes(root, {"x": {}})
    finish_lane(root, "x", {"x.txt": "x\n"})

    code, out = run_cli(capsys, root, "merge")

    assert code == 0, out
    assert "moved while merging" in out
    assert sh(root, "log", "-1", "--format=%s", "main^1") == "meanwhile"
    assert tracker(root)["lanes"]["x"]["status"] == "merged"
    assert is_clean(root)


def test_untracked_file_in_the_way_publishes_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_lanes(repo, {"x": {}})
    finish_lane(repo, "x", {"x.txt": "lane's\n"})
    write(repo, {"x.txt": "the user's own, untracked\n"})
    old = sh(repo, "rev-parse", "main")

    code, out = run_cli(capsys, repo, "merge")

    assert code == 3
    assert "nothing was published" in out
    assert (repo / "x.txt").read_text() == "the user's own, untracked\n"
    assert sh(repo, "rev-parse", "main") == old
    assert tracker(repo)["lanes"]["x"]["status"] == "completed"
    assert not (repo / ".orchestration" / "merge-journal.json").exists()


# --- Bad input: one clear line, the documented exit code, nothing changed ----------


def test_dirty_base_worktree_is_refused(rivals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(rivals, {"b.txt": "the user's edit\n"})
    before = snapshot(rivals)

    code, out = run_cli(capsys, rivals, "merge")

    assert code == 3
    assert "b.txt" in out
    assert "uncommitted changes" in out
    assert len(out.strip().splitlines()) == 1
    assert (rivals / "b.txt").read_text() == "the user's edit\n"
    assert snapshot(rivals) == before


def test_untracked_files_do_not_block_merge(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_lanes(repo, {"x": {}})
    finish_lane(repo, "x", {"x.txt": "x\n"})
    write(repo, {"notes.txt": "mine\n"})
    code, _ = run_cli(capsys, repo, "merge")
    assert code == 0
    assert (repo / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("where", ["other-branch", "detached"])
def test_base_worktree_not_on_base_branch_is_refused(
    rivals: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "detached":
        sh(rivals, "switch", "-q", "--detach", "main")
    else:
        sh(rivals, "switch", "-q", "-c", "feature")
    before = snapshot(rivals)

    code, out = run_cli(capsys, rivals, "merge")

    assert code == 3
    assert "not on the base branch 'main'" in out
    assert "git switch main" in out
    assert snapshot(rivals) == before


def test_no_completed_lanes_is_a_clear_message(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_lanes(repo, {"x": {}})
    code, out = run_cli(capsys, repo, "merge")
    assert code == 0
    assert "no completed lanes to merge (1 lane: 1 pending)" in out


def test_merge_lane_unknown_or_unfinished(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_lanes(repo, {"x": {}, "dep": {}, "needs": {"depends_on": ["dep"]}})
    finish_lane(repo, "dep", {"d.txt": "d\n"})
    finish_lane(repo, "needs", {"n.txt": "n\n"}, start="lane-dep")
    before = snapshot(repo)

    code, out = run_cli(capsys, repo, "merge", "--lane", "nope")
    assert (code, "no lane 'nope'" in out) == (2, True)
    code, out = run_cli(capsys, repo, "merge", "--lane", "x")
    assert (code, "lane 'x' is pending" in out) == (2, True)
    code, out = run_cli(capsys, repo, "merge", "--lane", "needs")
    assert (code, "depends on dep, not merged yet" in out) == (2, True)
    assert snapshot(repo) == before


def test_nothing_left_after_everything_merged(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_lanes(repo, {"x": {}})
    finish_lane(repo, "x", {"x.txt": "x\n"})
    assert run_cli(capsys, repo, "merge")[0] == 0
    head = sh(repo, "rev-parse", "main")
    code, out = run_cli(capsys, repo, "merge")
    assert code == 0
    assert "no completed lanes" in out
    assert sh(repo, "rev-parse", "main") == head
    code, out = run_cli(capsys, repo, "merge", "--lane", "x")
    assert (code, "already merged" in out) == (0, True)


def test_lane_without_branch_uses_recorded_head(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_lanes(repo, {"x": {}})
    head = commit_on_lane(repo, "x", {"x.txt": "x\n"}, worktree=False)
    set_status(repo, "x", "running", "completed", head=head)
    sh(repo, "branch", "-D", "lane-x")
    code, _ = run_cli(capsys, repo, "merge")
    assert code == 0
    assert sh(repo, "rev-parse", "main^2") == head


# --- Property: whatever the lanes, merge ends in a clean, explained state ----------

FILES = ("p.txt", "q.txt", "r.txt")
LINES = 8


@st.composite
def lane_sets(draw: st.DrawFn) -> list[dict]:  # type: ignore[type-arg]
    """Lanes that each rewrite some lines of some files, with priorities and dependencies."""
    count = draw(st.integers(min_value=2, max_value=6))
    lanes = []
    for i in range(count):
        edits = draw(
            st.lists(
                st.tuples(st.sampled_from(FILES), st.integers(0, LINES - 1)),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        deps = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        priority = draw(st.sampled_from(["high", "medium", "low"]))
        lanes.append({"edits": edits, "deps": [f"l{d}" for d in deps], "priority": priority})
    return lanes


def _make_lane_commit(root: Path, start: str, lane_id: str, edits: list[tuple[str, int]]) -> str:
    """Commit the lane's edits on top of `start` with plumbing only (fast, no worktree)."""
    contents = {}
    for name in FILES:
        lines = sh(root, "show", f"{start}:{name}").split("\n")
        for edited, line in edits:
            if edited == name:
                lines[line] = f"{lane_id} was here"
        contents[name] = "\n".join(lines) + "\n"
    entries = []
    for name, text in contents.items():
        blob = git.run("hash-object", "-w", "--stdin", cwd=root, input=text).stdout.strip()
        entries.append(f"100644 blob {blob}\t{name}")
    tree = git.run("mktree", cwd=root, input="\n".join(entries) + "\n").stdout.strip()
    return git.commit_tree(root, tree, [start], f"work of {lane_id}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=lane_sets())
def test_property_merge_explains_every_lane_and_check_predicted_it(spec: list[dict]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        root = make_repo(
            Path(tmp) / "repo", {name: "\n".join(["base"] * LINES) + "\n" for name in FILES}
        )
        add_lanes(
            root,
            {
                f"l{i}": {"priority": s["priority"], "depends_on": s["deps"]}
                for i, s in enumerate(spec)
            },
        )
        base = sh(root, "rev-parse", "main")
        heads: dict[str, str] = {}
        blocked = set()
        for i, s in enumerate(spec):
            lane_id = f"l{i}"
            # As execute does: start from the base with the dependencies merged in.
            start = base
            for dep in s["deps"]:
                if dep in blocked:
                    blocked.add(lane_id)
                    break
                merged = git.merge_tree(root, start, heads[dep])
                if merged.tree is None:
                    blocked.add(lane_id)
                    break
                start = git.commit_tree(
                    root, merged.tree, [start, heads[dep]], f"deps of {lane_id}"
                )
            if lane_id in blocked:
                set_status(root, lane_id, "blocked")
                continue
            heads[lane_id] = _make_lane_commit(root, start, lane_id, s["edits"])
            sh(root, "branch", f"lane-{lane_id}", heads[lane_id])
            set_status(root, lane_id, "running", "completed", head=heads[lane_id])
        repo = open_repo(root)

        predicted = merger.merge(repo, MergeScope(check=True))
        done = merger.merge(repo)

        outcome = [(o.lane_id, o.status, o.conflicts) for o in done.outcomes]
        assert [(o.lane_id, o.status, o.conflicts) for o in predicted.outcomes] == outcome
        assert predicted.exit_code == done.exit_code
        lanes = repo.store.read().lanes
        new = sh(root, "rev-parse", "main")
        assert git.is_ancestor(root, base, new)
        assert is_clean(root)
        for lane_id, lane in lanes.items():
            if lane_id in blocked:
                assert lane.status == "blocked"
            elif lane.status == "merged":
                assert git.is_ancestor(root, heads[lane_id], new)
            elif lane.status == "conflict":
                assert lane.merge.conflicts
                assert set(lane.merge.conflicts) <= set(FILES)
            else:
                assert lane.status == "completed"
                assert lane.merge.status == "skipped"
                assert any(lanes[d].status != "merged" for d in lane.depends_on)
