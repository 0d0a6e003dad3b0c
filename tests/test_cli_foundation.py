"""The foundation commands end to end: init, status, add-lane, reset, tracker get/update.

In-process through `orchestree.cli.main` (with capsys), and through the installed
`orchestree` executable and `python -m orchestree` for the end-to-end cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    assert_one_line,
    cli,
    env,
    git,
    make_repo,
    run_exe,
    run_helper,
    set_git_identity,
    snapshot,
)

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with one commit, not initialised."""
    set_git_identity(monkeypatch)
    return make_repo(tmp_path / "repo")


@pytest.fixture
def repo(bare: Path, capsys: Capsys) -> Path:
    """An initialised repository with lanes `api` (pending) and `docs` (depends on api)."""
    for args in (
        ["init"],
        ["add-lane", "api", '{"name": "API", "tasks": ["Build the API"], "priority": "high"}'],
        ["add-lane", "docs", '{"tasks": ["Write docs"], "depends_on": ["api"]}'],
    ):
        code, _, err = cli(capsys, *args[:1], "--repo", str(bare), *args[1:])
        assert code == 0, err
    return bare


def orch(root: Path) -> Path:
    return root / ".orchestration"


def tracker(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((orch(root) / "tracker.json").read_text("utf-8"))
    return data


def events(root: Path) -> list[dict[str, Any]]:
    text = (orch(root) / "events.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


# --- init ---------------------------------------------------------------------------


def test_init_creates_the_tracker_in_the_seed_shape(bare: Path, capsys: Capsys) -> None:
    code, out, err = cli(capsys, "init", "--repo", str(bare))
    assert (code, err) == (0, "")
    assert out == f"initialised orchestree in {bare} (tracker: {orch(bare) / 'tracker.json'})\n"
    data = tracker(bare)
    assert data["version"] == "1.0.0"
    assert (data["phase"], data["status"], data["agents"], data["lanes"]) == (
        0,
        "initialised",
        {},
        {},
    )
    assert data["repo"] == str(bare)
    assert data["base_branch"] == "main"
    assert data["base_commit"] == git(bare, "rev-parse", "HEAD")
    assert data["created_at"].endswith("Z")
    assert data["updated_at"].endswith("Z")
    assert (orch(bare) / "access_tracker.py").is_file()
    assert (orch(bare) / "logs").is_dir()
    assert [e["event"] for e in events(bare)] == ["init"]
    assert git(bare, "status", "--porcelain") == ""  # nothing of ours shows up in git


def test_init_from_a_subfolder_finds_the_root(
    bare: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bare / "src")
    code, out, _ = cli(capsys, "init")
    assert code == 0
    assert f"initialised orchestree in {bare}" in out
    assert (orch(bare) / "tracker.json").is_file()
    assert not (bare / "src" / ".orchestration").exists()


def test_init_with_repo_pointing_at_a_subfolder(bare: Path, capsys: Capsys) -> None:
    code, _, _ = cli(capsys, "init", "--repo", str(bare / "src"))
    assert code == 0
    assert tracker(bare)["repo"] == str(bare)


def test_second_init_keeps_every_lane_and_says_so(repo: Path, capsys: Capsys) -> None:
    before = tracker(repo)
    code, out, err = cli(capsys, "init", "--repo", str(repo))
    assert (code, err) == (0, "")
    assert out.startswith(f"already initialised in {repo}: 2 lane(s) kept")
    assert tracker(repo) == before


def test_excludes_are_added_once(bare: Path, capsys: Capsys) -> None:
    for _ in range(3):
        assert cli(capsys, "init", "--repo", str(bare))[0] == 0
    lines = (bare / ".git" / "info" / "exclude").read_text("utf-8").splitlines()
    # No trailing slash: the patterns match a file of that name as well as the folder.
    assert lines.count("/.orchestration") == 1
    assert lines.count("/.worktrees") == 1
    assert lines.count("# orchestree") == 1
    # The ignore works: files in those folders are invisible to git.
    (bare / ".worktrees").mkdir()
    (bare / ".worktrees" / "x.txt").write_text("x", "utf-8")
    assert git(bare, "status", "--porcelain", "--untracked-files=all") == ""


def test_init_outside_a_git_repository_exits_3(tmp_path: Path, capsys: Capsys) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    code, out, err = cli(capsys, "init", "--repo", str(plain))
    assert (code, out) == (3, "")
    assert_one_line(err, str(plain), "not inside a git repository")
    assert not (plain / ".orchestration").exists()


def test_init_of_a_missing_folder_exits_3(tmp_path: Path, capsys: Capsys) -> None:
    code, _, err = cli(capsys, "init", "--repo", str(tmp_path / "nope"))
    assert code == 3
    assert_one_line(err, "does not exist")


def test_init_in_a_repository_without_commits(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_git_identity(monkeypatch)
    empty = make_repo(tmp_path / "empty", commit=False)
    code, _, err = cli(capsys, "init", "--repo", str(empty))
    assert code == 3
    assert_one_line(err, "has no commits yet", "make a first commit")
    assert not (empty / ".orchestration").exists()


# --- status -----------------------------------------------------------------------------


def test_status_prints_a_table(repo: Path, capsys: Capsys) -> None:
    code, out, err = cli(capsys, "status", "--repo", str(repo))
    assert (code, err) == (0, "")
    assert "phase 0 (initialised)" in " ".join(out.split())  # rich wraps at 80 columns
    for word in ("api", "docs", "pending", "high", "medium"):
        assert word in out


def test_status_of_an_empty_tracker_says_how_to_add_a_lane(bare: Path, capsys: Capsys) -> None:
    cli(capsys, "init", "--repo", str(bare))
    code, out, _ = cli(capsys, "status", "--repo", str(bare))
    assert code == 0
    assert "orchestree add-lane" in out


def test_status_json_is_the_tracker(repo: Path, capsys: Capsys) -> None:
    code, out, err = cli(capsys, "status", "--json", "--repo", str(repo))
    assert (code, err) == (0, "")
    assert json.loads(out) == tracker(repo)


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["tracker", "get"]])
def test_commands_before_init_say_to_run_init(bare: Path, capsys: Capsys, args: list[str]) -> None:
    code, _, err = cli(capsys, *args, "--repo", str(bare))
    assert code == 2
    assert_one_line(err, "is not initialised", "orchestree init")


# --- add-lane ---------------------------------------------------------------------------


def test_add_lane_records_the_lane(repo: Path) -> None:
    lanes = tracker(repo)["lanes"]
    assert list(lanes) == ["api", "docs"]
    api = lanes["api"]
    assert (api["name"], api["tasks"], api["priority"], api["status"]) == (
        "API",
        ["Build the API"],
        "high",
        "pending",
    )
    assert (api["order"], lanes["docs"]["order"]) == (0, 1)
    assert lanes["docs"]["depends_on"] == ["api"]
    assert api["data"] == {}
    assert [e["event"] for e in events(repo)] == ["init", "add-lane", "add-lane"]
    assert events(repo)[1]["lanes"] == ["api"]


def test_add_lane_with_every_seed_and_extended_field(repo: Path, capsys: Capsys) -> None:
    lane = {
        "name": "Custom Analysis",
        "tasks": ["Analyze performance", "Generate report"],
        "parallel": False,
        "priority": "low",
        "depends_on": ["api", "docs"],
        "agent": "codex",
        "timeout_s": 120,
        "max_attempts": 3,
    }
    code, out, _ = cli(capsys, "add-lane", "--repo", str(repo), "custom-analysis", json.dumps(lane))
    assert code == 0
    assert out == "added 1 lane(s): custom-analysis\n"
    stored = tracker(repo)["lanes"]["custom-analysis"]
    assert {k: stored[k] for k in lane} == lane


def test_add_lane_accepts_the_longest_allowed_id(repo: Path, capsys: Capsys) -> None:
    lane_id = "a" + "b.c_d-" * 10 + "e" * 2
    assert len(lane_id) == 63
    code, _, err = cli(capsys, "add-lane", "--repo", str(repo), lane_id, "{}")
    assert code == 0, err
    assert lane_id in tracker(repo)["lanes"]


def test_add_lane_replace_redefines_a_lane_that_has_not_started(repo: Path, capsys: Capsys) -> None:
    code, out, _ = cli(
        capsys, "add-lane", "--replace", "--repo", str(repo), "api", '{"tasks": ["New plan"]}'
    )
    assert code == 0
    assert out == "replaced 1 lane(s): api\n"
    api = tracker(repo)["lanes"]["api"]
    assert (api["tasks"], api["priority"], api["order"]) == (["New plan"], "medium", 0)


def test_add_lane_from_a_file_adds_many_in_one_write(
    repo: Path, capsys: Capsys, tmp_path: Path
) -> None:
    plan = {
        "db": {"tasks": ["Schema"], "priority": "high"},
        "ui": {"tasks": ["Screens"], "depends_on": ["db", "api"]},
    }
    path = tmp_path / "lanes.json"
    path.write_text(json.dumps(plan), "utf-8")
    code, out, _ = cli(capsys, "add-lane", "--repo", str(repo), "--from", str(path))
    assert code == 0
    assert out == "added 2 lane(s): db, ui\n"
    assert list(tracker(repo)["lanes"]) == ["api", "docs", "db", "ui"]
    assert [e["event"] for e in events(repo)].count("add-lane") == 3  # one write for both


def test_add_lane_from_stdin(repo: Path) -> None:
    plan = json.dumps({"stdin-lane": {"tasks": ["From a pipe"]}})
    proc = run_exe(["add-lane", "--from", "-"], cwd=repo, stdin=plan)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert tracker(repo)["lanes"]["stdin-lane"]["tasks"] == ["From a pipe"]


BAD_LANES: list[tuple[list[str], str]] = [
    (["a/b", "{}"], "contains a slash"),
    (["a..b", "{}"], "contains '..'"),
    (["..", "{}"], "lane id '..'"),
    (["--", "-bad", "{}"], "lane id '-bad' starts with '-'"),
    (["-bad", "{}"], "lane id '-bad' starts with '-'"),
    (["x.lock", "{}"], "ends in '.lock'"),
    (["Upper", "{}"], "lane id 'Upper' may hold only lowercase"),
    (["with space", "{}"], "lane id 'with space' may hold only lowercase"),
    (["", "{}"], "lane id '' is empty"),
    (["a" * 64, "{}"], "is 64 characters long (at most 63)"),
    (["new", '{"tasks": ["a"'], "lane 'new' JSON is not valid JSON"),
    (["new", '["tasks"]'], "must be a JSON object"),
    (["new", '"just text"'], "must be a JSON object"),
    (["new", '{"tasks": "one task"}'], "field 'tasks' input should be a valid list"),
    (["new", '{"tasks": ["ok", 3]}'], "field 'tasks.1' input should be a valid string"),
    (["new", '{"priority": "urgent"}'], "field 'priority'"),
    (["new", '{"depend_on": ["api"]}'], "unknown field 'depend_on'"),
    (["new", '{"depends_on": ["ghost"]}'], "depends on 'ghost', which is not a lane"),
    (["new", '{"depends_on": ["new"]}'], "lane 'new' depends on itself"),
    (["new", '{"depends_on": ["../x"]}'], "lane id '../x'"),
    (["new", '{"depends_on": ["api", "api"]}'], "lists a dependency twice"),
    (["api", '{"tasks": ["again"]}'], "lane 'api' already exists; use --replace"),
    (["--replace", "api", '{"depends_on": ["docs"]}'], "form a cycle"),
    (["new", '{"timeout_s": 0}'], "field 'timeout_s'"),
    (["new", '{"timeout_s": -5}'], "field 'timeout_s'"),
    (["new", '{"max_attempts": 0}'], "field 'max_attempts'"),
    (["new", '{"agent": "nobody"}'], "agent 'nobody' is neither a preset nor defined in"),
    (["new", '{"parallel": "sometimes"}'], "field 'parallel'"),
    (["new"], "add-lane needs <id> and <json>"),
    (["new", "{}", "--from", "x.json"], "either <id> <json> or --from"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_LANES, ids=[n for _, n in BAD_LANES])
def test_bad_lane_input_exits_2_with_one_line_and_changes_nothing(
    repo: Path, capsys: Capsys, args: list[str], needle: str
) -> None:
    before = snapshot(orch(repo))
    events_before = (orch(repo) / "events.jsonl").read_bytes()
    code, out, err = cli(capsys, "add-lane", "--repo", str(repo), *args)
    assert (code, out) == (2, "")
    assert_one_line(err, "orchestree: ", needle)
    assert snapshot(orch(repo)) == before
    assert (orch(repo) / "events.jsonl").read_bytes() == events_before


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ({"x": {"depends_on": ["y"]}, "y": {"depends_on": ["x"]}}, "form a cycle"),
        ({"x": {"depends_on": ["y"]}, "y": {"depends_on": ["z"]}}, "'z', which is not a lane"),
        ({"ok": {}, "Bad": {}}, "lane id 'Bad'"),
        ({"ok": {}, "bad": ["not", "an", "object"]}, "lane 'bad' must be a JSON object"),
        ({"ok": {}, "bad": {"priority": "asap"}}, "lane 'bad': field 'priority'"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_add_lane_from_validates_the_whole_file_first(
    repo: Path, capsys: Capsys, tmp_path: Path, plan: Any, needle: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan), "utf-8")
    before = snapshot(orch(repo))
    code, _, err = cli(capsys, "add-lane", "--repo", str(repo), "--from", str(path))
    assert code == 2
    assert_one_line(err, needle)
    assert snapshot(orch(repo)) == before


def test_add_lane_from_a_missing_file(repo: Path, capsys: Capsys, tmp_path: Path) -> None:
    code, _, err = cli(capsys, "add-lane", "--repo", str(repo), "--from", str(tmp_path / "no"))
    assert code == 2
    assert_one_line(err, "cannot read", "No such file")


@pytest.mark.parametrize(
    "steps", [["running"], ["running", "failed"], ["running", "cancelled"], ["blocked"]]
)
def test_replace_of_a_started_lane_is_refused(repo: Path, capsys: Capsys, steps: list[str]) -> None:
    status = steps[-1]
    for step in steps:
        update = json.dumps({"lanes": {"api": {"status": step}}})
        assert cli(capsys, "tracker", "update", "--repo", str(repo), update)[0] == 0
    before = snapshot(orch(repo))
    code, _, err = cli(capsys, "add-lane", "--replace", "--repo", str(repo), "api", "{}")
    assert code == 2
    assert_one_line(
        err, f"lane 'api' has started ({status})", "can be replaced before it starts or once merged"
    )
    assert snapshot(orch(repo)) == before


def test_replace_of_a_pending_lane_that_was_attempted_is_refused(
    repo: Path, capsys: Capsys
) -> None:
    cli(capsys, "tracker", "update", "--repo", str(repo), '{"lanes": {"api": {"attempts": 1}}}')
    code, _, err = cli(capsys, "add-lane", "--replace", "--repo", str(repo), "api", "{}")
    assert code == 2
    assert_one_line(err, "lane 'api' has started (pending)")


def test_a_custom_agent_from_the_config_is_accepted(repo: Path, capsys: Capsys) -> None:
    (repo / "orchestree.toml").write_text(
        '[agents.mybot]\ncommand = ["mybot", "{prompt}"]\n', "utf-8"
    )
    code, _, err = cli(capsys, "add-lane", "--repo", str(repo), "bot", '{"agent": "mybot"}')
    assert code == 0, err
    assert tracker(repo)["lanes"]["bot"]["agent"] == "mybot"


# --- tracker get / update -----------------------------------------------------------------


def test_tracker_get_prints_the_whole_tracker_or_one_value(repo: Path, capsys: Capsys) -> None:
    code, out, _ = cli(capsys, "tracker", "get", "--repo", str(repo))
    assert (code, json.loads(out)) == (0, tracker(repo))
    code, out, _ = cli(capsys, "tracker", "get", "lanes.api.tasks.0", "--repo", str(repo))
    assert (code, json.loads(out)) == (0, "Build the API")
    code, out, _ = cli(capsys, "tracker", "get", "lanes.docs", "--repo", str(repo))
    assert json.loads(out)["depends_on"] == ["api"]


@pytest.mark.parametrize(
    ("path", "needle"),
    [("lanes.ghost", "stopped at 'ghost'"), ("lanes.api.tasks.7", "stopped at '7'")],
)
def test_tracker_get_of_a_missing_key_exits_2(
    repo: Path, capsys: Capsys, path: str, needle: str
) -> None:
    code, out, err = cli(capsys, "tracker", "get", path, "--repo", str(repo))
    assert (code, out) == (2, "")
    assert_one_line(err, f"the tracker has no {path!r}", needle)


def test_tracker_update_deep_merges(repo: Path, capsys: Capsys) -> None:
    update = {"lanes": {"api": {"progress": "50% complete", "data": {"k": [1]}}}, "phase": 3}
    code, out, err = cli(capsys, "tracker", "update", "--repo", str(repo), json.dumps(update))
    assert (code, out, err) == (0, "tracker updated\n", "")
    data = tracker(repo)
    assert data["phase"] == 3
    assert data["lanes"]["api"]["progress"] == "50% complete"
    assert data["lanes"]["api"]["data"] == {"k": [1]}
    assert data["lanes"]["api"]["tasks"] == ["Build the API"]
    assert events(repo)[-1] == {**events(repo)[-1], "actor": "cli", "update": update}


BAD_UPDATES: list[tuple[str, str]] = [
    ('{"lanes": {"api": {"status": "finished"}}}', "status 'finished' is not one of"),
    ('{"lanes": {"api": {"status": "merged"}}}', "cannot go from 'pending' to 'merged'"),
    ('{"agents": {"agent-api": {"status": "sleeping"}}}', "agent 'agent-api': status"),
    ('{"lanes": {"api": {"priority": "urgent"}}}', "field 'lanes.api.priority'"),
    ('{"lanes": {"api": {"depend_on": []}}}', "unknown field 'lanes.api.depend_on'"),
    ('{"lanes": {"api": {"depends_on": ["docs"]}}}', "form a cycle"),
    ('{"lanes": {"Bad": {}}}', "there is no lane 'Bad'"),
    (
        '{"lanes": {"apj": {"progress": "x"}}}',
        "there is no lane 'apj' (did you mean 'api'?); lanes are",
    ),
    ('{"lanes": {"api": {"progress": NaN}}}', "the update is not valid JSON (NaN"),
    ('{"lanes": {"api": {"data": {"x": 1e400}}}}', "the update is not valid JSON (1e400"),
    ('{"phase": 9}', "field 'phase'"),
    ('{"lanes": {', "the update is not valid JSON"),
    ("[1, 2]", "the update must be a JSON object"),
]


@pytest.mark.parametrize(("update", "needle"), BAD_UPDATES, ids=[n for _, n in BAD_UPDATES])
def test_bad_tracker_update_exits_2_and_changes_nothing(
    repo: Path, capsys: Capsys, update: str, needle: str
) -> None:
    before = snapshot(orch(repo))
    code, out, err = cli(capsys, "tracker", "update", "--repo", str(repo), update)
    assert (code, out) == (2, "")
    assert_one_line(err, needle)
    assert snapshot(orch(repo)) == before


# --- reset ----------------------------------------------------------------------------------


def test_reset_yes_archives_and_starts_fresh(repo: Path, capsys: Capsys) -> None:
    old = (orch(repo) / "tracker.json").read_bytes()
    code, out, err = cli(capsys, "reset", "--yes", "--repo", str(repo))
    assert (code, err) == (0, "")
    archived = list((orch(repo) / "archive").iterdir())
    assert len(archived) == 1
    assert archived[0].name.endswith(".json")
    assert f"tracker archived to {archived[0]}" in out
    assert json.loads(archived[0].read_bytes()) == json.loads(old)
    fresh = tracker(repo)
    assert (fresh["lanes"], fresh["phase"], fresh["base_branch"]) == ({}, 0, "main")
    assert events(repo)[-1]["event"] == "reset"
    # A second reset in the same second does not overwrite the first archive.
    assert cli(capsys, "reset", "-y", "--repo", str(repo))[0] == 0
    assert len(list((orch(repo) / "archive").iterdir())) == 2


def test_reset_asks_and_no_changes_nothing(repo: Path) -> None:
    before = snapshot(orch(repo))
    proc = run_exe(["reset"], cwd=repo, stdin="n\n")
    assert proc.returncode == 1
    assert "start over? [y/N]" in proc.stdout
    assert_one_line(proc.stderr, "reset cancelled; nothing changed")
    assert snapshot(orch(repo)) == before
    assert not (orch(repo) / "archive").exists()


def test_reset_asks_and_yes_resets(repo: Path) -> None:
    proc = run_exe(["reset"], cwd=repo, stdin="y\n")
    assert proc.returncode == 0, proc.stderr
    assert tracker(repo)["lanes"] == {}
    assert len(list((orch(repo) / "archive").iterdir())) == 1


def test_reset_without_an_answer_changes_nothing(repo: Path) -> None:
    before = snapshot(orch(repo))
    proc = run_exe(["reset"], cwd=repo)  # stdin is /dev/null
    assert proc.returncode == 1
    assert_one_line(proc.stderr, "no answer; nothing changed")
    assert snapshot(orch(repo)) == before


# --- a torn or newer tracker stops every command ----------------------------------------
# These trackers come from before ledgers (docs/trust.md): without one, tracker.json is
# all there is to go by. With a ledger, see test_trust.py.


def drop_ledger(root: Path) -> None:
    for name in ("ledger.json", "ledger.key"):
        (orch(root) / "ledger" / name).unlink()


TORN = b'{"version": "1.0.0", "phase": 0, "lanes": {"api": {"sta'
NEWER = json.dumps({"version": "9.0.0", "phase": 0, "agents": {}, "lanes": {}}).encode()

COMMANDS = [
    ["init"],
    ["status"],
    ["status", "--json"],
    ["add-lane", "new", "{}"],
    ["reset", "--yes"],
    ["tracker", "get"],
    ["tracker", "get", "lanes"],
    ["tracker", "update", '{"lanes": {"api": {"progress": "x"}}}'],
]


BROKEN = pytest.mark.parametrize(
    ("content", "needle"),
    [(TORN, "is not valid JSON"), (NEWER, "is version 9.0.0, newer than")],
    ids=["torn", "v9"],
)


@BROKEN
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_a_torn_or_newer_tracker_stops_every_command(
    repo: Path, capsys: Capsys, content: bytes, needle: str, args: list[str]
) -> None:
    drop_ledger(repo)
    (orch(repo) / "tracker.json").write_bytes(content)
    before = snapshot(orch(repo))
    assert before["tracker.json.bak"] is not None
    code, out, err = cli(capsys, *args, "--repo", str(repo))
    assert (code, out) == (3, "")
    assert_one_line(err, str(orch(repo) / "tracker.json"), needle)
    assert snapshot(orch(repo)) == before
    assert not (orch(repo) / "archive").exists()


@BROKEN
@pytest.mark.parametrize("update", [None, '{"lanes": {"api": {"progress": "x"}}}'])
def test_a_torn_or_newer_tracker_stops_the_helper(
    repo: Path, content: bytes, needle: str, update: str | None
) -> None:
    drop_ledger(repo)
    path = orch(repo) / "tracker.json"
    path.write_bytes(content)
    before = snapshot(orch(repo))
    proc = run_helper(orch(repo) / "access_tracker.py", str(path), *([update] if update else []))
    assert (proc.returncode, proc.stdout) == (3, "")
    assert_one_line(proc.stderr, str(path), needle)
    assert snapshot(orch(repo)) == before


def test_a_torn_tracker_message_points_at_the_backup(repo: Path, capsys: Capsys) -> None:
    drop_ledger(repo)
    (orch(repo) / "tracker.json").write_bytes(TORN)
    _, _, err = cli(capsys, "status", "--repo", str(repo))
    assert_one_line(err, "the last good copy is", "tracker.json.bak")


def test_a_tracker_that_is_json_but_invalid_stops_commands(repo: Path, capsys: Capsys) -> None:
    drop_ledger(repo)
    data = tracker(repo)
    data["lanes"]["api"]["status"] = "exploded"
    (orch(repo) / "tracker.json").write_text(json.dumps(data), "utf-8")
    before = snapshot(orch(repo))
    code, _, err = cli(capsys, "status", "--repo", str(repo))
    assert code == 3
    assert_one_line(err, "is not a valid tracker", "lanes.api.status", "tracker.json.bak")
    assert snapshot(orch(repo)) == before


def test_a_field_an_agent_may_not_write_is_refused_by_the_helper(
    repo: Path, capsys: Capsys
) -> None:
    path = orch(repo) / "tracker.json"
    before = snapshot(orch(repo))
    broken = run_helper(
        orch(repo) / "access_tracker.py", str(path), '{"lanes": {"api": {"priority": "asap"}}}'
    )
    assert broken.returncode == 2
    assert_one_line(broken.stderr, "`priority` is orchestree's", "nothing was written")
    assert snapshot(orch(repo)) == before
    code, _, err = cli(capsys, "add-lane", "x", "{}", "--repo", str(repo))
    assert (code, err) == (0, "")


# --- help, entry points, errors -------------------------------------------------------------


def all_commands() -> list[list[str]]:
    """Every command and group of the app, as the words that reach it."""
    import typer.main

    from orchestree.cli import app

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name in getattr(command, "list_commands", lambda ctx: [])(None):
            found += walk(command.get_command(None, name), [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


HELP = all_commands()


def test_the_help_walk_sees_the_foundation_commands() -> None:
    for words in (["init"], ["status"], ["add-lane"], ["reset"], ["tracker", "update"]):
        assert words in HELP


@pytest.mark.parametrize("args", HELP, ids=[" ".join(h) or "orchestree" for h in HELP])
def test_every_help_shows_an_example(capsys: Capsys, args: list[str]) -> None:
    code, out, err = cli(capsys, *args, "--help")
    assert (code, err) == (0, "")
    assert "Example:" in out
    assert out.startswith(f"Usage: orchestree {' '.join(args)}".rstrip() + " [OPTIONS]")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nosuch"], "No such command 'nosuch'"),
        (["status", "--bogus"], "No such option: --bogus"),
        (["tracker", "update"], "Missing argument"),
        (["init", "--repo"], "requires an argument"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys: Capsys, args: list[str], needle: str) -> None:
    code, out, err = cli(capsys, *args)
    assert (code, out) == (2, "")
    assert_one_line(err, "orchestree: ", needle, "--help")


@pytest.mark.parametrize("args", [[], ["tracker"]])
def test_a_group_without_a_command_shows_its_help(capsys: Capsys, args: list[str]) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert "Usage: orchestree" in err
    assert "Traceback" not in err


def test_the_installed_command_end_to_end(bare: Path) -> None:
    steps = [
        ["init"],
        ["add-lane", "docs", '{"name": "Docs", "tasks": ["Write the README"]}'],
        ["add-lane", "--", "-bad", "{}"],
        ["add-lane", "-bad", "{}"],
        ["tracker", "update", '{"lanes": {"docs": {"progress": "halfway"}}}'],
        ["status"],
        ["status", "--json"],
    ]
    procs = [run_exe(args, cwd=bare / "src") for args in steps]
    assert [p.returncode for p in procs] == [0, 0, 2, 2, 0, 0, 0]
    for proc in procs:
        assert "Traceback" not in proc.stderr
    assert_one_line(procs[2].stderr, "lane id '-bad' starts with '-'")
    assert_one_line(procs[3].stderr, "lane id '-bad' starts with '-'")
    assert "docs" in procs[5].stdout
    assert json.loads(procs[6].stdout)["lanes"]["docs"]["progress"] == "halfway"


def test_python_dash_m_orchestree(bare: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestree", *args],
            cwd=bare,
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    helped = run("--help")
    assert helped.returncode == 0
    assert "Example:" in helped.stdout
    assert run("init").returncode == 0
    listed = run("tracker", "get", "lanes")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, {})
    outside = run("status", "--repo", "/")
    assert outside.returncode == 3
    assert_one_line(outside.stderr, "not inside a git repository")


def test_debug_shows_the_traceback_that_is_otherwise_hidden(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    quiet = run_exe(["status"], cwd=plain)
    loud = run_exe(["--debug", "status"], cwd=plain)
    assert quiet.returncode == 3
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
