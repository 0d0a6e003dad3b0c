"""Start-up budget (issue 18): which modules each command imports, not how long it takes.

Timings on a shared machine are noise; a module list is not. Each command runs in a
fresh interpreter through the real entry point, which then reports what of the heavy
libraries `sys.modules` holds. pydantic alone costs more than half of `import typer`,
so a command within the 1.5x budget must not load it; Rich, Starlette, psutil and
Dask belong only to the commands that draw, serve, supervise or distribute.
bench/startup.py measures the times these lists stand for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import env, git, make_repo
from orchestree import fastpath
from orchestree.access_tracker import LEDGER_DIR, locked
from orchestree.cli import app, tracker_app
from orchestree.fastpath import NO_LANES_TO_MERGE, NO_LANES_TO_RUN
from orchestree.initrepo import TRACKER_VERSION, empty_tracker, init_fresh, prepare
from orchestree.layout import Layout
from orchestree.models import TRACKER_VERSION as MODEL_VERSION
from orchestree.models import Tracker
from orchestree.tracker import TrackerStore

HEAVY = ("pydantic", "pydantic_core", "rich", "starlette", "uvicorn", "psutil", "dask")
# What a command that neither draws a table, serves a page, checks a process nor
# distributes work may load: the validation models, nothing else of HEAVY.
MODELS_ONLY = {"pydantic", "pydantic_core"}

_PROBE = """
import json, sys
from orchestree.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("\\n" + json.dumps({{"code": code, "heavy": heavy}}))
"""


def loaded(
    cwd: Path, *args: str, stdin: str | None = None, watch: tuple[str, ...] = HEAVY
) -> tuple[int, set[str]]:
    """Run `orchestree ARGS` in a fresh interpreter; its exit code and the modules of
    `watch` (HEAVY) it loaded."""
    code, heavy, _ = said(cwd, *args, stdin=stdin, watch=watch)
    return code, heavy


def said(
    cwd: Path, *args: str, stdin: str | None = None, watch: tuple[str, ...] = HEAVY
) -> tuple[int, set[str], str]:
    """`loaded`, and what the command printed (stdout and stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=watch), *args],
        cwd=cwd,
        env=env(),
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    *printed, last = proc.stdout.strip().splitlines()
    report = json.loads(last)
    return report["code"], set(report["heavy"]), "\n".join(printed).strip() + proc.stderr


def command_names() -> list[list[str]]:
    """Every command, sub-commands of `tracker` included: a new one is covered too."""
    top = [[str(c.name or c.callback.__name__)] for c in app.registered_commands]  # type: ignore[union-attr]
    sub = [["tracker", str(c.name)] for c in tracker_app.registered_commands]
    return [*top, *sub]


def test_every_help_starts_without_heavy_modules(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    names = command_names()
    assert ["init"] in names
    assert ["tracker", "update"] in names
    for argv in [[], ["--version"], *names]:
        code, heavy = loaded(repo, *argv, "--help")
        assert (code, heavy) == (0, set()), argv


def test_first_init_and_status_json_start_without_pydantic(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init") == (0, set())
    assert (repo / ".orchestration" / "tracker.json").is_file()
    assert loaded(repo, "status", "--json") == (0, set())


def test_init_with_a_config_file_still_validates_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "orchestree.toml").write_text("[defaults]\nmax_paralel = 2\n", encoding="utf-8")
    code, heavy = loaded(repo, "init")
    assert code == 2
    assert "pydantic" in heavy
    assert not (repo / ".orchestration" / "tracker.json").exists()


def test_run_commands_leave_drawing_serving_and_processes_out(tmp_path: Path) -> None:
    """In a pipe, the commands that only change the tracker or run git load no Rich,
    Starlette, psutil or Dask (the 2x budget of `execute`/`merge` is bench/startup.py's)."""
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    lanes = json.dumps({"a": {"tasks": ["t"], "agent": "shell"}})
    runs = [  # (argv, stdin, exit code): 1 once the lane is cancelled
        (["add-lane", "--from", "-"], lanes, 0),
        (["tracker", "get", "lanes.a.status"], None, 0),
        (["tracker", "update", '{"lanes": {"a": {"progress": "1%"}}}'], None, 0),
        (["cancel", "a"], None, 0),
        (["execute"], None, 1),
        (["merge"], None, 1),
        (["merge", "--check"], None, 1),
    ]
    for argv, stdin, expected in runs:
        code, heavy = loaded(repo, *argv, stdin=stdin)
        assert code == expected, argv
        assert heavy <= MODELS_ONLY, (argv, heavy)


def test_fresh_init_writes_what_the_model_writes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    layout = init_fresh(repo / "src")
    assert layout is not None
    assert layout.root == repo
    store = TrackerStore(layout.tracker)
    written = store.read_raw()
    model = Tracker(
        repo=str(repo), base_branch="main", base_commit=written["base_commit"]
    ).model_dump(mode="json")
    stamps = ("created_at", "updated_at")
    assert {k: v for k, v in written.items() if k not in stamps} == {
        k: v for k, v in model.items() if k not in stamps
    }
    assert TRACKER_VERSION == MODEL_VERSION
    assert store.read().status == "initialised"
    events = (layout.orch / "events.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(e)["event"] for e in events] == ["init"]
    assert init_fresh(repo) is None  # the second time, the full path checks the tracker
    fresh = empty_tracker(repo, prepare(Layout(repo), None))
    assert fresh["base_commit"] == written["base_commit"]


def test_status_reads_and_progress_updates_start_without_pydantic(tmp_path: Path) -> None:
    """With a config file too: its two location keys are read without validating the
    rest; an update of orchestree's own fields and a broken config take the full path."""
    repo = make_repo(tmp_path / "repo")
    config = repo / "orchestree.toml"
    config.write_text('[defaults]\nagent = "shell"\n[worktree]\nroot = ".lanes"\n', "utf-8")
    assert loaded(repo, "init")[0] == 0
    lanes = json.dumps({"a": {"tasks": ["t"]}})
    assert loaded(repo, "add-lane", "--from", "-", stdin=lanes)[0] == 0
    update = '{"lanes": {"a": {"progress": "1%", "data": {"k": 1}}}}'
    for argv in (["status"], ["status", "--json"], ["tracker", "get", "lanes.a"],
                 ["tracker", "update", update]):  # fmt: skip
        assert loaded(repo, *argv) == (0, set()), argv
    shown = subprocess.run(
        [sys.executable, "-m", "orchestree", "status"], cwd=repo, env=env(),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    row = next(line.split() for line in shown.splitlines() if line.startswith("a "))
    assert row[:4] == ["a", "pending", "medium", "shell"]
    assert row[-1] == "1%"
    store = TrackerStore(repo / ".orchestration" / "tracker.json")
    assert (store.read().lanes["a"].progress, store.read().lanes["a"].data) == ("1%", {"k": 1})
    code, heavy = loaded(repo, "tracker", "update", '{"lanes": {"a": {"priority": "high"}}}')
    assert (code, "pydantic" in heavy) == (0, True)
    assert store.read().lanes["a"].priority == "high"
    code, heavy = loaded(repo, "tracker", "update", '{"lanes": {"b": {"progress": "x"}}}')
    assert (code, "pydantic" in heavy) == (2, True)  # no lane b: the full path says so
    config.write_text("[defaults\n", "utf-8")
    code, heavy = loaded(repo, "status")
    assert (code, "pydantic" in heavy) == (2, True)


def test_a_config_changed_since_it_was_checked_is_validated_again(tmp_path: Path) -> None:
    """status reads orchestree.toml lightly only as the full path last found it valid
    (the digest in .orchestration/ledger/config.checked): an edit is validated once, then
    read lightly again."""
    repo = make_repo(tmp_path / "repo")
    config = repo / "orchestree.toml"
    config.write_text('[defaults]\nagent = "shell"\n', "utf-8")
    assert loaded(repo, "init")[0] == 0
    assert loaded(repo, "status") == (0, set())
    config.write_text('[defaults]\nagent = "codex"\n', "utf-8")
    code, heavy = loaded(repo, "status")
    assert (code, "pydantic" in heavy) == (0, True)
    assert loaded(repo, "status") == (0, set())
    config.write_text('[defaults]\nagent = "codex"\nmax_parallel = "4"\n', "utf-8")
    for _ in range(2):  # refused each time: an invalid config is never remembered
        code, heavy = loaded(repo, "status")
        assert (code, "pydantic" in heavy) == (2, True)


def test_the_light_commands_take_the_checked_config_without_parsing_it(tmp_path: Path) -> None:
    """What they need of it comes from .orchestration/ledger/config.checked, as the full
    path validated it: no TOML parser is loaded. The file is in the ledger's folder,
    which a sandbox binds read-only as a whole."""
    repo = make_repo(tmp_path / "repo")
    config = '[worktree]\nroot = "trees"\n\n[defaults]\nagent = "shell"\n'
    (repo / "orchestree.toml").write_text(config, "utf-8")
    assert loaded(repo, "init")[0] == 0
    assert loaded(repo, "status", watch=("tomllib", *HEAVY)) == (0, set())
    where = fastpath.locate(repo)
    assert where is not None
    assert (where.layout.worktrees, where.agent) == (repo.resolve() / "trees", "shell")
    assert where.layout.config_checked.parent.name == LEDGER_DIR
    assert where.layout.config_checked.is_file()


def test_the_light_commands_find_the_repository_as_git_does(tmp_path: Path) -> None:
    """From a subfolder, the main worktree is found without starting git; when the
    environment bounds git's search, git decides (and here refuses)."""
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    shown = subprocess.run(
        [sys.executable, "-m", "orchestree", "tracker", "get", "repo"], cwd=deep, env=env(),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(shown) == str(repo)
    bounded = {**env(), "GIT_CEILING_DIRECTORIES": str(repo)}
    refused = subprocess.run(
        [sys.executable, "-m", "orchestree", "status"], cwd=deep, env=bounded,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 3
    assert "not inside a git repository" in refused.stderr


_IDLE = (["execute"], ["merge"], ["merge", "--check"])


def test_execute_and_merge_of_no_lanes_start_without_pydantic(tmp_path: Path) -> None:
    """Nothing to run, nothing to merge: each says so in one line, decided from the
    ledger-checked tracker, and changes nothing (no write, no event)."""
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    orch = repo / ".orchestration"
    before = {p.name: p.read_bytes() for p in orch.iterdir() if p.is_file()}
    notes = {"execute": f"note: {NO_LANES_TO_RUN}", "merge": f"note: {NO_LANES_TO_MERGE}"}
    for argv in _IDLE:
        assert said(repo, *argv) == (0, set(), notes[argv[0]]), argv
    after = {p.name: p.read_bytes() for p in orch.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != "run.lock"} == {
        k: v for k, v in before.items() if k != "run.lock"
    }


def test_no_lanes_reads_the_same_on_the_full_path(tmp_path: Path) -> None:
    """A config edited since it was checked, and a [merge] table, send `execute` and
    `merge` through the models: they print the same line and exit 0 as the light path."""
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    light = {tuple(argv): said(repo, *argv) for argv in _IDLE}
    config = repo / "orchestree.toml"
    for argv in _IDLE:
        config.write_text(f"# changed for {argv}\n[merge]\nbatch = 4\n", "utf-8")
        code, heavy, out = said(repo, *argv)
        assert "pydantic" in heavy, argv
        assert (code, out) == light[tuple(argv)][::2], argv
    assert loaded(repo, "execute") == (0, set())  # checked now; [merge] is merge's only


def test_a_broken_config_still_refuses_execute_and_merge(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    (repo / "orchestree.toml").write_text("[defaults]\nmax_paralel = 2\n", "utf-8")
    for argv in _IDLE:
        code, heavy, out = said(repo, *argv)
        assert (code, "pydantic" in heavy) == (2, True), argv
        assert "max_paralel" in out, argv


def test_what_merge_refuses_is_refused_by_the_full_path(tmp_path: Path) -> None:
    """With no lanes, the full path still refuses a base worktree with changes, one off
    its branch and a run lock someone holds (exit 3); the light path never says "no
    lanes" over them. Edits of tracker.json are named by the run that acts on them."""
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    (repo / "README.md").write_text("changed\n", "utf-8")
    code, heavy, out = said(repo, "merge")
    assert (code, "pydantic" in heavy, "uncommitted changes" in out) == (3, True, True)
    git(repo, "checkout", "-q", "README.md")
    git(repo, "checkout", "-q", "--detach")
    code, heavy, out = said(repo, "merge", "--check")
    assert (code, "pydantic" in heavy, "detached HEAD" in out) == (3, True, True)
    git(repo, "checkout", "-q", "main")
    with locked(str(repo / ".orchestration" / "run.lock"), timeout=0):
        code, heavy, out = said(repo, "merge")
    assert (code, "pydantic" in heavy, "holds" in out) == (3, True, True)
    tracker = repo / ".orchestration" / "tracker.json"
    data = json.loads(tracker.read_text("utf-8"))
    data["lanes"]["mine"] = {"tasks": ["t"]}
    tracker.write_text(json.dumps(data), "utf-8")
    code, heavy, out = said(repo, "execute")
    assert (code, "pydantic" in heavy) == (0, True)
    assert "lanes.mine added" in out


def test_add_lane_starts_without_pydantic(tmp_path: Path) -> None:
    """One lane by options, 24 by --from, a --replace of lanes never run: no models. A
    lane the models refuse, and an id taken, are the models' to name (exit 2)."""
    repo = make_repo(tmp_path / "repo")
    (repo / "orchestree.toml").write_text('[agents.mine]\ncommand = ["true"]\n', "utf-8")
    assert loaded(repo, "init")[0] == 0
    one = '{"tasks": ["t"], "agent": "mine", "timeout_s": 60}'
    assert said(repo, "add-lane", "one", one) == (0, set(), "added 1 lane(s): one")
    many = json.dumps({f"l{i}": {"tasks": ["t"], "depends_on": ["one"]} for i in range(24)})
    for argv in (["add-lane", "--from", "-"], ["add-lane", "--replace", "--from", "-"]):
        assert loaded(repo, *argv, stdin=many) == (0, set()), argv
    code, heavy, out = said(repo, "add-lane", "two", '{"priority": "urgent"}')
    assert (code, "pydantic" in heavy, "'priority'" in out) == (2, True, True)
    code, heavy, out = said(repo, "add-lane", "one", "{}")
    assert (code, "pydantic" in heavy, "already exists" in out) == (2, True, True)
    lanes = TrackerStore(repo / ".orchestration" / "tracker.json").read().lanes  # validated
    assert (len(lanes), lanes["one"].agent, lanes["one"].timeout_s) == (25, "mine", 60.0)
    assert [lanes[f"l{i}"].order for i in (0, 23)] == [1, 24]


def test_a_run_without_a_webhook_loads_no_http_client(tmp_path: Path) -> None:
    """`execute` and `merge` that run a lane, with `[notify]` unset: the HTTP client (and
    its ssl, email) is imported only to post a webhook."""
    repo = make_repo(tmp_path / "repo")
    assert loaded(repo, "init")[0] == 0
    lanes = json.dumps({"a": {"tasks": ["echo a > a.txt"], "agent": "shell"}})
    assert loaded(repo, "add-lane", "--from", "-", stdin=lanes)[0] == 0
    for argv in (["execute"], ["merge"]):
        code, heavy = loaded(repo, *argv, watch=("http.client", "ssl", "urllib.request"))
        assert (code, heavy) == (0, set()), argv
    assert git(repo, "log", "-1", "--format=%s") == "Merge lane-a"
