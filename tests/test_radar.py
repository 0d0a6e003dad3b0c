"""The conflict radar on real repositories: running lanes' uncommitted work, read without
touching their worktrees; textual conflicts only; the tracker record; `execute`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanes_helpers import add_lanes, commit_on_lane, make_repo, set_status, sh, write
from orchestree import access_tracker
from orchestree.cli import main
from orchestree.merge import radar
from orchestree.merge.results import MergeScope
from orchestree.models import RADAR_BASE
from orchestree.repo import Repo, open_repo

LINES = "".join(f"line {i}\n" for i in range(1, 21))


def edit(text: str, line: int, new: str) -> str:
    rows = text.splitlines(keepends=True)
    rows[line - 1] = new + "\n"
    return "".join(rows)


def untouched(worktree: Path) -> tuple[str, str, str, str, list[str]]:
    """Everything of a lane's worktree the radar must leave as it was: its index file
    (hashed), its status, its HEAD and branch, and its admin folder's files."""
    admin = Path(sh(worktree, "rev-parse", "--absolute-git-dir"))
    index = hashlib.sha256((admin / "index").read_bytes()).hexdigest()
    return (
        index,
        sh(worktree, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all"),
        sh(worktree, "rev-parse", "HEAD"),
        sh(worktree, "symbolic-ref", "HEAD"),
        sorted(p.name for p in admin.iterdir()),
    )


@pytest.fixture
def lanes(tmp_path: Path) -> Path:
    """Lane a committed line 1 of f.txt; running lane b changed line 1 only in its
    worktree (with something staged too); c committed line 20 of the same file; d
    committed g.txt, which the base branch changed since."""
    root = make_repo(tmp_path / "repo", {"f.txt": LINES, "g.txt": "gee\n"})
    add_lanes(root, {k: {} for k in "abcd"})
    commit_on_lane(root, "a", {"f.txt": edit(LINES, 1, "A was here")})
    commit_on_lane(root, "b", {"b-notes.txt": "notes\n"})
    commit_on_lane(root, "c", {"f.txt": edit(LINES, 20, "C was here")})
    commit_on_lane(root, "d", {"g.txt": "dee\n"})
    for lane in "abcd":
        set_status(root, lane, "running")
    b = open_repo(root).layout.worktree("b")
    write(b, {"staged.txt": "staged\n"})
    sh(b, "add", "staged.txt")
    write(b, {"f.txt": edit(LINES, 1, "B was here"), "new-untracked.txt": "n\n"})
    write(root, {"g.txt": "main's gee\n"})
    sh(root, "commit", "-qam", "the base moves on")
    return root


def test_names_a_pair_one_side_uncommitted_without_touching_either_worktree(
    lanes: Path,
) -> None:
    repo = open_repo(lanes)
    worktrees = {k: repo.layout.worktree(k) for k in "abcd"}
    before = {k: untouched(w) for k, w in worktrees.items()}
    branches = sh(lanes, "for-each-ref", "--format=%(refname) %(objectname)")

    found = radar.scan(repo.layout, repo.store.read())

    assert [(f.lanes, f.files) for f in found.findings] == [
        (("a", "b"), ("f.txt",)),
        (("d", RADAR_BASE), ("g.txt",)),
    ]
    # c changed other lines of f.txt: merged in memory, no alarm
    assert not [f for f in found.findings if "c" in f.lanes]
    assert found.merges == 4  # a-b, a-c, b-c, d-base; never the pairs that share no file
    works = {w.lane_id: w for w in found.works}
    assert works["b"].working
    assert works["b"].paths == {"b-notes.txt", "staged.txt", "f.txt", "new-untracked.txt"}
    assert {k: untouched(w) for k, w in worktrees.items()} == before
    assert sh(lanes, "for-each-ref", "--format=%(refname) %(objectname)") == branches


def test_the_same_change_on_two_sides_is_no_pair_and_passes_share_gits_answers(
    tmp_path: Path,
) -> None:
    root = make_repo(tmp_path / "repo", {"f.txt": LINES})
    add_lanes(root, {k: {} for k in "xyz"})
    for lane in "xy":  # the same line made the same: git merges it cleanly
        commit_on_lane(root, lane, {"f.txt": edit(LINES, 3, "same"), f"{lane}.txt": lane})
    commit_on_lane(root, "z", {"f.txt": edit(LINES, 3, "different")})
    for lane in "xyz":
        set_status(root, lane, "running", "completed")
    repo = open_repo(root)
    memo = radar.Memo()

    found = radar.scan(repo.layout, repo.store.read(), memo=memo)

    assert [(f.lanes, f.files) for f in found.findings] == [
        (("x", "z"), ("f.txt",)),
        (("y", "z"), ("f.txt",)),
    ]
    assert found.merges == 2  # x-y made f.txt the same: never merged
    heads = {w.lane_id: w.commit for w in found.works}
    assert set(memo.conflicts) == {(heads["x"], heads["z"]), (heads["y"], heads["z"])}
    # The next pass asks git nothing it asked before: what the memo says is the answer.
    memo.conflicts[(heads["x"], heads["z"])] = ["remembered.txt"]
    again = radar.scan(repo.layout, repo.store.read(), memo=memo)
    assert (("x", "z"), ("remembered.txt",)) in [(f.lanes, f.files) for f in again.findings]
    assert {w.lane_id: w for w in again.works} == {w.lane_id: w for w in found.works}


AB = {"lanes": ["a", "b"], "files": ["f.txt"]}


def look(repo: Repo) -> tuple[list[radar.Finding], list[radar.Finding]]:
    return radar.record(repo.store, radar.scan(repo.layout, repo.store.read()).findings)


def test_recorded_in_the_tracker_with_events_and_kept_since(lanes: Path) -> None:
    repo = open_repo(lanes)
    appeared, cleared = radar.record(
        repo.store, radar.scan(repo.layout, repo.store.read()).findings
    )
    assert [f.lanes for f in appeared] == [("a", "b"), ("d", RADAR_BASE)]
    assert cleared == []
    first = repo.store.read().radar
    assert [(r.lanes, r.files) for r in first] == [
        (["a", "b"], ["f.txt"]),
        (["d", "<base>"], ["g.txt"]),
    ]

    # the same findings again: nothing written, `since` kept
    assert look(repo) == ([], [])
    assert repo.store.read().radar == first

    # b puts line 1 back: the pair clears, d's stays with its first `since`
    write(repo.layout.worktree("b"), {"f.txt": LINES})
    appeared, cleared = radar.record(
        repo.store, radar.scan(repo.layout, repo.store.read()).findings
    )
    assert (appeared, [f.lanes for f in cleared]) == ([], [("a", "b")])
    assert repo.store.read().radar == first[1:]
    text = repo.layout.orch.joinpath("events.jsonl").read_text()
    events = [json.loads(line) for line in text.splitlines()]
    said = [(e.get("appeared"), e.get("cleared")) for e in events if e["event"] == "radar"]
    assert said == [
        (
            [
                {"lanes": ["a", "b"], "files": ["f.txt"]},
                {"lanes": ["d", "<base>"], "files": ["g.txt"]},
            ],
            [],
        ),
        ([], [AB]),
    ]


def test_an_agent_cannot_write_the_radar(lanes: Path) -> None:
    tracker = str(open_repo(lanes).layout.orch / "tracker.json")
    forged = {"radar": [{"lanes": ["a", "c"], "files": ["x"], "since": "now"}]}
    with pytest.raises(access_tracker.InvalidUpdateError, match="`radar` is orchestree's"):
        access_tracker.update(tracker, forged, actor="agent-a", lane="a")


def test_cli_radar_json_and_text(lanes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["radar", "--json", "--repo", str(lanes)]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["findings"] == [
        {"lanes": ["a", "b"], "files": ["f.txt"]},
        {"lanes": ["d", "<base>"], "files": ["g.txt"]},
    ]
    assert shown["base_branch"] == "main"
    assert [r.lanes for r in open_repo(lanes).store.read().radar] == [
        ["a", "b"],
        ["d", "<base>"],
    ]

    assert main(["radar", "--repo", str(lanes)]) == 1
    out = capsys.readouterr().out
    assert "lane a would conflict with lane b in f.txt" in out
    assert "lane d would conflict with the base branch main in g.txt" in out

    assert main(["status", "--repo", str(lanes)]) == 0
    assert "lane a would conflict with lane b in f.txt" in capsys.readouterr().out


def test_an_agent_may_run_radar_and_it_only_prints(
    lanes: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTREE_LANE", "b")
    assert main(["radar", "--repo", str(lanes)]) == 1
    assert "lane a would conflict with lane b" in capsys.readouterr().out
    assert open_repo(lanes).store.read().radar == []


def test_no_lanes_no_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path / "repo")
    assert main(["radar", "--repo", str(root)]) == 0
    assert "no conflicts ahead among 0 lanes" in capsys.readouterr().out


# --- during execute: real agents, the radar read through their helper ----------------

AGENT = """
lane = sys.argv[1]
out = Path(OUT)
tracker = os.environ["ORCHESTREE_TRACKER"]
helper = str(Path(tracker).parent / "access_tracker.py")


def radar():
    said = subprocess.run(["python3", helper, tracker], capture_output=True, text=True)
    return json.loads(said.stdout).get("radar", [])


def git(*args):
    return subprocess.run(["git", "--no-optional-locks", *args], capture_output=True,
                          text=True, check=True).stdout


def state():
    admin = git("rev-parse", "--absolute-git-dir").strip()
    index = hashlib.sha256(Path(admin, "index").read_bytes()).hexdigest()
    return [index, git("status", "--porcelain"), git("rev-parse", "HEAD"),
            git("symbolic-ref", "HEAD"), sorted(os.listdir(admin))]


rows = Path("f.txt").read_text().splitlines(keepends=True)
plan = {"a": (0, "A\\n", True), "b": (0, "B\\n", False), "c": (19, "C\\n", True)}
line, text, commit = plan[lane]
rows[line] = text
Path("f.txt").write_text("".join(rows))
if commit:
    git("commit", "-qam", f"lane {lane}")
before = state()
deadline = time.time() + 90
while not any(sorted(f["lanes"]) == ["a", "b"] for f in radar()):
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.2)
after = state()
prompt = Path(os.environ["ORCHESTREE_PROMPT_FILE"]).read_text()
report = {"before": before, "after": after, "radar": radar(), "prompt": prompt}
(out / f"{lane}.json").write_text(json.dumps(report))
"""


def test_execute_names_the_pair_while_both_run_and_agents_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exec_helpers import add_lanes as add
    from exec_helpers import agent_config, cli, write_script
    from exec_helpers import make_repo as make

    out = tmp_path / "out"
    out.mkdir()
    script = write_script(tmp_path / "agent.py", f"import hashlib\nOUT = {str(out)!r}\n{AGENT}")
    config = agent_config("radarbot", script, extra="\n[radar]\nevery_s = 0.3\n")
    root = make(tmp_path, monkeypatch, config=config, files={"f.txt": LINES})
    add(root, {k: {"agent": "radarbot"} for k in "abc"})

    result = cli(root, "execute")

    assert result.code == 0, result.out + result.err
    seen = {k: json.loads((out / f"{k}.json").read_text()) for k in "abc"}
    # b held its change only in its worktree while the radar looked: nothing of it moved
    assert seen["b"]["before"] == seen["b"]["after"]
    assert seen["b"]["before"][1] == " M f.txt\n"
    for lane in "abc":  # each read the finding through its helper, while all three ran
        assert {"lanes": ["a", "b"], "files": ["f.txt"]} in [
            {"lanes": f["lanes"], "files": f["files"]} for f in seen[lane]["radar"]
        ]
        assert not [f for f in seen[lane]["radar"] if "c" in f["lanes"]]  # other lines
        assert '"radar" list' in seen[lane]["prompt"]
    assert "radar: lane a would conflict with lane b in f.txt" in result.out
    events = [
        json.loads(x) for x in (root / ".orchestration" / "events.jsonl").read_text().splitlines()
    ]
    first_radar = next(i for i, e in enumerate(events) if e["event"] == "radar")
    finished = [
        i for i, e in enumerate(events) if e.get("lane") == "b" and e.get("status") == "completed"
    ]
    assert finished
    assert first_radar < finished[0]


def test_a_merged_lane_leaves_the_radar(lanes: Path) -> None:
    from orchestree.merge import merger

    repo = open_repo(lanes)
    set_status(lanes, "a", "completed", head=sh(lanes, "rev-parse", "lane-a"))
    look(repo)
    assert [r.lanes for r in repo.store.read().radar] == [["a", "b"], ["d", "<base>"]]

    assert merger.merge(repo, MergeScope("a")).exit_code == 0

    assert [r.lanes for r in repo.store.read().radar] == [["d", "<base>"]]
    # the next pass finds b against the base, where a's work now is
    look(repo)
    assert [r.lanes for r in repo.store.read().radar] == [["b", "<base>"], ["d", "<base>"]]


def test_both_monitors_show_the_findings_as_text(
    lanes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    from orchestree.monitor.snapshot import build_snapshot

    repo = open_repo(lanes)
    look(repo)
    raw = json.loads((repo.layout.orch / "tracker.json").read_text())
    snap = build_snapshot(raw, now=datetime.now(UTC), process_identity=lambda pid: None)
    said = [(w.kind, w.lane, w.message) for w in snap.warnings if w.kind == "radar"]
    assert said == [
        ("radar", "a", "radar: lane a would conflict with lane b in f.txt"),
        ("radar", "d", "radar: lane d would conflict with the base branch main in g.txt"),
    ]
    # what an agent wrote there is shown as text, escaped, never as markup
    raw["radar"][0]["files"] = ["[bold]x\x1b[31m"]
    snap = build_snapshot(raw, now=datetime.now(UTC), process_identity=lambda pid: None)
    message = next(w.message for w in snap.warnings if w.kind == "radar")
    assert "\x1b" not in message

    assert main(["monitor", "--once", "--repo", str(lanes)]) == 0
    assert "radar: lane a would conflict with lane b in f.txt" in capsys.readouterr().out


def test_a_radar_forged_in_tracker_json_is_ignored(lanes: Path) -> None:
    repo = open_repo(lanes)
    look(repo)
    path = repo.layout.orch / "tracker.json"
    raw = json.loads(path.read_text())
    raw["radar"] = []  # an agent hides the conflict it is part of
    path.write_text(json.dumps(raw))

    assert [r.lanes for r in repo.store.read().radar] == [["a", "b"], ["d", "<base>"]]
    assert "`radar` changed" in repo.store.take_edits()


def test_a_lane_whose_index_git_cannot_read_is_a_note_not_a_failed_pass(lanes: Path) -> None:
    repo = open_repo(lanes)
    b = repo.layout.worktree("b")
    index = Path(sh(b, "rev-parse", "--absolute-git-dir")) / "index"
    index.write_bytes(b"not an index")  # what a hostile or broken agent may leave

    found = radar.scan(repo.layout, repo.store.read())

    assert [f.lanes for f in found.findings] == [("d", RADAR_BASE)]
    assert len(found.notes) == 1
    assert found.notes[0].startswith("lane b: not compared (")
    assert index.read_bytes() == b"not an index"


def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` first on PATH that logs its subcommand, then runs the real git; the
    log it writes (one line a call)."""
    import shutil
    import stat

    real = shutil.which("git")
    assert real is not None
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "git-calls.log"
    wrapper = folder / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {real} "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return log


def test_a_later_pass_asks_git_only_about_work_that_is_new(
    lanes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What two commits say never changes: with the memo of an earlier pass, a pass
    diffs and merges only the running lane's working files (a new commit each pass),
    so its cost does not grow with the lanes that finished; and it finds the same."""
    for lane in "acd":
        set_status(lanes, lane, "completed", head=sh(lanes, "rev-parse", f"lane-{lane}"))
    repo = open_repo(lanes)
    fresh = radar.scan(repo.layout, repo.store.read())
    memo = radar.Memo()
    radar.scan(repo.layout, repo.store.read(), memo=memo)
    log = git_calls(tmp_path, monkeypatch)

    again = radar.scan(repo.layout, repo.store.read(), memo=memo)

    calls = sorted(log.read_text().split())
    # the base and the lanes' heads, then b's working files: read into a scratch index
    # (`-c ... add -A`, `-c ... write-tree`), made a commit, diffed against its start;
    # a, c and d cost nothing. b's commit is new when the clock passed a second since
    # the last pass, and then its merges with a and c (all three change f.txt) are
    # asked again; a's with c never is.
    assert calls.count("merge-tree") in (0, 2), calls
    assert [c for c in calls if c != "merge-tree"] == [
        "-c", "-c", "commit-tree", "diff", "for-each-ref", "rev-parse"
    ]  # fmt: skip
    assert again.findings == fresh.findings
    assert [f.lanes for f in again.findings] == [("a", "b"), ("d", RADAR_BASE)]
    assert [(w.lane_id, w.paths) for w in again.works] == [
        (w.lane_id, w.paths) for w in fresh.works
    ]


@given(
    st.lists(st.frozensets(st.sampled_from("abcdefgh"), max_size=4), max_size=12),
)
def test_overlapping_pairs_found_through_the_path_index_are_every_pair_that_shares_a_path(
    changed: list[frozenset[str]],
) -> None:
    from itertools import combinations

    works = [radar.LaneWork(f"l{n:02d}", "c", "s", p, False) for n, p in enumerate(changed)]
    every = [(i, j) for i, j in combinations(range(len(works)), 2) if changed[i] & changed[j]]
    assert radar._sharing(works) == every
