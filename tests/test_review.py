"""`orchestree rework <lane> --message/--file`: review comments back to the lane's own
agent, through the merge queue's rework machinery. Real repositories, real `execute`
runs of a scripted agent that records what it was given, the real CLI."""

from __future__ import annotations

import json
import subprocess
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
from orchestree import review
from orchestree.repo import open_repo

if TYPE_CHECKING:  # tests/chaos has a conftest too: import the name for typing only
    from conftest import FakeAgents

# First attempt: feature.txt says v1 (orchestree commits it). A rework: record the
# reason, the rework file and the prompt, then commit v2 itself and leave notes.txt
# for orchestree to commit; FOLDER/fail makes it fail instead, FOLDER/hold makes the
# first attempt wait for FOLDER/go.
AGENT = """
lane = sys.argv[1]
folder = Path(FOLDER)
reason = os.environ.get("ORCHESTREE_REWORK")
if not reason:
    Path("feature.txt").write_text(f"v1 by {lane}\\n")
    if (folder / "hold").exists():
        (folder / "ready").write_text("yes")
        while not (folder / "go").exists():
            time.sleep(0.05)
    sys.exit(0)
seen = {
    "reason": reason,
    "file": Path(os.environ["ORCHESTREE_REWORK_FILE"]).read_text(),
    "prompt": Path(os.environ["ORCHESTREE_PROMPT_FILE"]).read_text(),
}
with (folder / f"{lane}.seen").open("a") as fh:
    fh.write(json.dumps(seen) + "\\n")
if (folder / "fail").exists():
    sys.exit(3)
Path("feature.txt").write_text("v2, as the review asked\\n")
subprocess.run(["git", "commit", "-q", "-am", "act on the review"], check=True)
Path("notes.txt").write_text("renamed as asked\\n")
"""

REVIEW = "Rename `v1` to `v2`, please.\nAnd say why in notes.txt. <script>alert(1)</script>\n"


def review_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    folder = tmp_path / "agent"
    folder.mkdir()
    script = write_script(folder / "agent.py", f"FOLDER = {str(folder)!r}\n{AGENT}")
    config = agent_config("scripted", script).replace('agent = "shell"', 'agent = "scripted"')
    repo = make_repo(tmp_path, monkeypatch, config=config)
    return repo, folder


def seen(folder: Path, lane: str) -> list[dict[str, Any]]:
    path = folder / f"{lane}.seen"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def tracker_bytes(repo: Path) -> bytes:
    return (repo / ".orchestration" / "tracker.json").read_bytes()


def test_review_comments_from_a_file_go_to_the_agent_and_its_commits_to_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, folder = review_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"name": "Alpha", "tasks": ["write the feature"]}})
    assert cli(repo, "execute").code == 0
    first = git(repo, "rev-parse", "lane-alpha")
    review = tmp_path / "review.md"
    review.write_text(REVIEW, encoding="utf-8")

    result = cli(repo, "rework", "alpha", "--file", str(review))

    assert result.code == 0, result.out + result.err
    assert "alpha: review rework 1" in result.out
    lane = tracker(repo)["lanes"]["alpha"]
    assert (lane["status"], lane["attempts"]) == ("completed", 2)
    assert (lane["rework"]["reason"], lane["rework"]["count"]) == ("review", 1)
    # What the agent was given: the reason, the comments in the file and in its prompt.
    (got,) = seen(folder, "alpha")
    assert got["reason"] == "review"
    details = json.loads(got["file"])
    assert (details["reason"], details["comments"]) == ("review", REVIEW.strip())
    assert "THIS ATTEMPT IS A REWORK (review, rework 1)" in got["prompt"]
    assert "A reviewer asks for changes:\n" + REVIEW.strip() in got["prompt"]
    # Its new commits are on the lane, on top of the first attempt's; that head is kept.
    head = git(repo, "rev-parse", "lane-alpha")
    assert head != first
    git(repo, "merge-base", "--is-ancestor", first, head)
    assert git(repo, "show", "lane-alpha:feature.txt") == "v2, as the review asked"
    assert git(repo, "show", "lane-alpha:notes.txt") == "renamed as asked"
    assert git(repo, "rev-parse", "refs/orchestree/attempts/alpha/1") == first
    # The reviewed lane then merges like any other.
    assert cli(repo, "merge").code == 0
    assert git(repo, "show", "main:feature.txt") == "v2, as the review asked"


def test_a_failing_review_attempt_exits_1_and_a_second_review_counts_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, folder = review_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"tasks": ["write the feature"]}})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "rework", "alpha", "-m", "first round").code == 0
    second = git(repo, "rev-parse", "lane-alpha")
    (folder / "fail").write_text("yes")

    result = cli(repo, "rework", "alpha", "--message", "second round")

    assert result.code == 1, result.out + result.err
    assert statuses(repo) == {"alpha": "failed"}
    assert tracker(repo)["lanes"]["alpha"]["rework"]["count"] == 2
    assert [json.loads(s["file"])["comments"] for s in seen(folder, "alpha")] == [
        "first round",
        "second round",
    ]
    assert git(repo, "rev-parse", "refs/orchestree/attempts/alpha/2") == second


def test_a_conflicted_lane_takes_review_comments_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, folder = review_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"priority": "high"}, "beta": {"priority": "low"}})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 1
    assert statuses(repo) == {"alpha": "merged", "beta": "conflict"}

    result = cli(repo, "rework", "beta", "-m", "take alpha's line")

    assert result.code == 0, result.out + result.err
    assert statuses(repo) == {"alpha": "merged", "beta": "completed"}
    assert [json.loads(s["file"])["comments"] for s in seen(folder, "beta")] == [
        "take alpha's line"
    ]
    assert tracker(repo)["lanes"]["beta"]["merge"]["conflicts"] == []


def test_a_merged_or_running_lane_is_refused_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, folder = review_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"tasks": ["write the feature"]}})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 0
    before = tracker_bytes(repo)
    refs = git(repo, "for-each-ref")

    merged = cli(repo, "rework", "alpha", "-m", "too late")

    assert (merged.code, merged.out) == (2, "")
    assert merged.err == (
        "orchestree: lane 'alpha' is merged; review comments go to a completed, conflict or "
        "verify_failed lane that is not merged; its work is in the base branch already: add "
        "a lane for further changes (`orchestree add-lane`); nothing changed\n"
    )
    assert (tracker_bytes(repo), git(repo, "for-each-ref")) == (before, refs)

    add_lanes(repo, {"beta": {"tasks": ["write the feature"]}})
    (folder / "hold").write_text("yes")
    run = subprocess.Popen(
        [ORCHESTREE, "execute", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for((folder / "ready").exists, 60, "the agent to start")
        running = cli(repo, "rework", "beta", "-m", "not yet")
    finally:
        (folder / "go").write_text("yes")
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert (running.code, running.out) == (2, "")
    assert running.err == (
        "orchestree: lane 'beta' is running; review comments go to a completed, conflict or "
        "verify_failed lane that is not merged; its agent is still at work: wait until it "
        "finishes (`orchestree status`); nothing changed\n"
    )
    assert seen(folder, "beta") == []
    assert tracker(repo)["lanes"]["beta"]["rework"] is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "exactly one of --message TEXT or --file PATH"),
        (("-m", "a", "--file", "review.md"), "exactly one of --message TEXT or --file PATH"),
        (("-m", "  \n "), "the review comments (--message) are empty; say what to change"),
        (("--file", "empty.md"), "are empty; say what to change"),
        (("--file", "missing.md"), "missing.md does not exist; pass the review file's path"),
        (("--file", "latin1.md"), "is not UTF-8 text"),
    ],
)
def test_bad_comments_are_one_line_exit_2_and_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], said: str
) -> None:
    repo, folder = review_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"tasks": ["write the feature"]}})
    assert cli(repo, "execute").code == 0
    (tmp_path / "review.md").write_text("fine\n")
    (tmp_path / "empty.md").write_text("\n\n")
    (tmp_path / "latin1.md").write_bytes("caf\xe9\n".encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    before = tracker_bytes(repo)

    result = cli(repo, "rework", "alpha", *args)

    assert (result.code, result.out) == (2, "")
    assert result.err.count("\n") == 1
    assert said in result.err
    assert tracker_bytes(repo) == before
    assert seen(folder, "alpha") == []


def test_an_unknown_lane_and_an_agent_inside_a_lane_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = review_repo(tmp_path, monkeypatch)
    unknown = cli(repo, "rework", "nope", "-m", "hello")
    assert (unknown.code, unknown.err) == (
        2,
        "orchestree: no lane 'nope'; `orchestree status` lists the lanes\n",
    )
    monkeypatch.setenv("ORCHESTREE_LANE", "alpha")
    inside = cli(repo, "rework", "alpha", "-m", "hello")
    assert inside.code == 2
    assert "`orchestree rework` changes the run" in inside.err
    allowed = cli(repo, "diff", "nope")
    assert "no lane 'nope' in the tracker" in allowed.err, "diff is a view: agents may run it"


def test_a_review_resumes_the_agents_own_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_agents: FakeAgents
) -> None:
    config = '[defaults]\nagent = "claude"\nkill_grace_s = 0.5\n'
    repo = make_repo(tmp_path, monkeypatch, config=config, files={"shared.txt": "x\n"})
    add_lanes(repo, {"second": {"tasks": ["append a line to shared.txt"]}})
    fake_agents.set(edit="shared.txt")
    assert cli(repo, "execute").code == 0
    session = tracker(repo)["lanes"]["second"]["session_id"]
    assert session

    result = cli(repo, "rework", "second", "-m", "one more line, please")

    assert result.code == 0, result.out + result.err
    run = fake_agents.runs()["claude-second"]
    assert run["argv"][run["argv"].index("--resume") + 1] == session
    assert run["env"]["ORCHESTREE_REWORK"] == "review"


def test_a_review_recorded_but_never_run_runs_with_the_next_execute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a SIGKILL between recording the comments and starting the agent leaves."""
    repo, folder = review_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"tasks": ["write the feature"]}})
    assert cli(repo, "execute").code == 0
    first = git(repo, "rev-parse", "lane-alpha")
    review.send_back(open_repo(repo), "alpha", "left for later")
    assert statuses(repo) == {"alpha": "pending"}
    assert git(repo, "rev-parse", "refs/orchestree/attempts/alpha/1") == first

    assert cli(repo, "execute").code == 0

    assert statuses(repo) == {"alpha": "completed"}
    (got,) = seen(folder, "alpha")
    assert (got["reason"], json.loads(got["file"])["comments"]) == ("review", "left for later")
    assert git(repo, "show", "lane-alpha:feature.txt") == "v2, as the review asked"
