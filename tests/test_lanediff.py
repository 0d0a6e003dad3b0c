"""`orchestree diff` and the dashboard's diff endpoint, on real repositories with real
`execute` runs of scripted agents: a running lane's uncommitted work read without
touching its worktree, a dependent lane counted from its start, the JSON shape served
by a real uvicorn."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from _monitor_server import request, serve
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
from orchestree import lanediff, orchestrator

BASE = {"app.py": "".join(f"line {i}\n" for i in range(1, 11)), "logo.bin": "\0\1\2"}

# Changes line 3 of app.py, adds notes.txt and a binary file, then (with FOLDER/hold)
# commits nothing more and waits until the test writes FOLDER/go.
AGENT = """
lane = sys.argv[1]
folder = Path(FOLDER)
text = Path("app.py").read_text().replace("line 3\\n", f"line 3 by {lane}\\n")
Path("app.py").write_text(text)
Path(f"{lane}-notes.txt").write_text("one\\ntwo\\n<script>alert(1)</script>\\n")
Path(f"{lane}.bin").write_bytes(bytes(range(256)))
if (folder / "hold").exists():
    (folder / f"{lane}.ready").write_text("yes")
    while not (folder / "go").exists():
        time.sleep(0.05)
"""


def diff_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    folder = tmp_path / "agent"
    folder.mkdir()
    script = write_script(folder / "agent.py", f"FOLDER = {str(folder)!r}\n{AGENT}")
    config = agent_config("scripted", script).replace('agent = "shell"', 'agent = "scripted"')
    return make_repo(tmp_path, monkeypatch, config=config, files=BASE), folder


def untouched(worktree: Path) -> tuple[str, str, str]:
    """What a diff must leave as it was: the index file's bytes (hashed), the
    worktree's status and its HEAD."""
    admin = Path(git(worktree, "rev-parse", "--absolute-git-dir"))
    index = hashlib.sha256((admin / "index").read_bytes()).hexdigest()
    status = git(worktree, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all")
    return index, status, git(worktree, "rev-parse", "HEAD")


def test_a_running_lanes_uncommitted_work_is_shown_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, folder = diff_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"tasks": ["mark line 3"]}})
    (folder / "hold").write_text("yes")
    run = subprocess.Popen(
        [ORCHESTREE, "execute", "--repo", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for((folder / "alpha.ready").exists, 60, "the agent to write its files")
        assert statuses(repo) == {"alpha": "running"}
        worktree = orchestrator.open_repo(repo).layout.worktree("alpha")
        before = untouched(worktree)
        start = git(repo, "rev-parse", "main")

        got = cli(repo, "diff", "alpha", "--json")
        names = cli(repo, "diff", "alpha", "--name-only")
        stat = cli(repo, "diff", "alpha", "--stat")
        patch = cli(repo, "diff", "alpha")

        assert untouched(worktree) == before
        assert git(repo, "rev-parse", "lane-alpha") == start, "nothing was committed for it"
    finally:
        (folder / "go").write_text("yes")
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert got.code == 0, got.err
    data = json.loads(got.out)
    assert set(data) == {"lane", "start", "head", "uncommitted", "files", "patch", "truncated"}
    assert (data["lane"], data["start"], data["head"]) == ("alpha", start, start)
    assert data["uncommitted"] is True
    assert data["truncated"] is False
    assert data["files"] == [
        {"path": "alpha-notes.txt", "added": 3, "removed": 0, "binary": False},
        {"path": "alpha.bin", "added": 0, "removed": 0, "binary": True},
        {"path": "app.py", "added": 1, "removed": 1, "binary": False},
    ]
    assert "-line 3\n+line 3 by alpha\n" in data["patch"]
    assert "+<script>alert(1)</script>\n" in data["patch"]
    assert (names.code, names.out) == (0, "alpha-notes.txt\nalpha.bin\napp.py\n")
    assert "work not committed yet" in names.err
    assert stat.code == 0
    assert "3 files changed, 4 insertions(+), 1 deletion(-)" in stat.out
    assert patch.code == 0
    assert patch.out == data["patch"]
    # Once the lane finished, the same change is its committed work.
    done = json.loads(cli(repo, "diff", "alpha", "--json").out)
    assert done["uncommitted"] is False
    assert done["head"] == git(repo, "rev-parse", "lane-alpha") != start
    assert done["files"] == data["files"]


def test_a_dependent_lane_counts_from_its_start_not_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files=BASE)
    add_lanes(
        repo,
        {
            "first": {"tasks": ["printf 'first\\n' > first.txt"]},
            "second": {"tasks": ["printf 'second\\n' > second.txt"], "depends_on": ["first"]},
        },
    )
    assert cli(repo, "execute").code == 0
    start = tracker(repo)["lanes"]["second"]["start_commit"]
    assert git(repo, "rev-parse", "lane-first") == start, "second began on first's work"

    data = json.loads(cli(repo, "diff", "second", "--json").out)

    assert data["start"] == start != git(repo, "rev-parse", "main")
    assert data["files"] == [{"path": "second.txt", "added": 1, "removed": 0, "binary": False}]
    assert json.loads(cli(repo, "diff", "first", "--json").out)["files"] == [
        {"path": "first.txt", "added": 1, "removed": 0, "binary": False}
    ]
    # Merged, a lane's diff is still its own change, not an empty one.
    assert cli(repo, "merge").code == 0
    assert cli(repo, "diff", "first", "--name-only").out == "first.txt\n"
    assert cli(repo, "diff", "second", "--name-only").out == "second.txt\n"


def test_unknown_lanes_and_mixed_views_are_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files=BASE)
    add_lanes(repo, {"later": {"tasks": ["true"]}})
    unknown = cli(repo, "diff", "nope")
    assert (unknown.code, unknown.out) == (2, "")
    assert unknown.err == (
        "orchestree: no lane 'nope' in the tracker; `orchestree status` lists the lanes\n"
    )
    pending = cli(repo, "diff", "later")
    assert pending.code == 2
    assert pending.err.count("\n") == 1
    assert "has no commit to compare yet (it is pending)" in pending.err
    both = cli(repo, "diff", "later", "--stat", "--json")
    assert both.code == 2
    assert "pick one" in both.err


def test_a_long_patch_is_cut_at_a_line_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, files=BASE)
    add_lanes(repo, {"big": {"tasks": ["seq 1 20000 > big.txt"]}})
    assert cli(repo, "execute").code == 0
    state = orchestrator.open_repo(repo)

    whole = lanediff.lane_diff(state.layout, state.store.read(), "big")
    cut = lanediff.lane_diff(state.layout, state.store.read(), "big", limit=1000)

    assert not whole.truncated
    assert whole.files == [lanediff.FileDiff("big.txt", 20000, 0, False)]
    assert cut.truncated
    assert len(cut.patch) <= 1000
    assert cut.patch.endswith("\n")
    assert whole.patch.startswith(cut.patch)
    assert cut.files == whole.files, "the counts stay whole"


def test_the_endpoint_serves_the_same_json_and_refuses_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = diff_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"alpha": {"tasks": ["mark line 3"]}})
    assert cli(repo, "execute").code == 0
    add_lanes(repo, {"later": {"depends_on": ["alpha"]}})
    expected = json.loads(cli(repo, "diff", "alpha", "--json").out)

    with serve(repo) as port:
        status, headers, body = request(port, "/api/lanes/alpha/diff")
        assert (status, headers["content-type"]) == (200, "application/json")
        assert json.loads(body) == expected
        assert b"<script>" in body, "a diff line is data in a JSON string, as it is"

        status, headers, body = request(port, "/api/lanes/nope/diff")
        assert (status, headers["content-type"]) == (404, "application/json")
        assert json.loads(body) == {"error": "no lane 'nope' in the tracker"}

        status, headers, body = request(port, "/api/lanes/later/diff")
        assert status == 404
        assert "has no commit to compare yet" in json.loads(body)["error"]

        for hostile in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>"):
            status, headers, body = request(port, f"/api/lanes/{quote(hostile, safe='')}/diff")
            assert (status, headers["content-type"]) == (400, "application/json")
            assert json.loads(body)["error"].startswith(f"lane id {hostile!r} ")
            assert "default-src 'none'" in headers["content-security-policy"]

        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = request(port, "/api/lanes/alpha/diff", method=method, body=b"{}")
            assert (status, headers["allow"]) == (405, "GET, HEAD")
        assert request(port, "/api/lanes/alpha/diff", host="evil.example")[0] == 421
