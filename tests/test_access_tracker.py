"""The stdlib store and helper agents call: `.orchestration/access_tracker.py`.

Everything here goes through the copy `orchestree init` placed in the repository,
run with the system's `python3` as an agent would, or imported from that file.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from helpers import assert_one_line, cli, env, make_repo, run_helper, set_git_identity, snapshot
from orchestree import access_tracker
from orchestree.tracker import TrackerStore

WRITERS = 8
UPDATES = 200

# Imports the helper from its path and deep-merges COUNT updates into distinct keys of
# lane `work`'s data, after every writer is ready (a start file), so they overlap.
WRITER = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("placed_helper", sys.argv[1])
helper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper)
tracker, name, count, start = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
while not os.path.exists(start):
    time.sleep(0.001)
for i in range(count):
    helper.update(tracker, {"lanes": {"work": {"data": {f"{name}-{i}": i}}}}, actor=name)
"""

# Parses the tracker in a loop, without a lock, until the stop file appears.
READER = """
import json, os, sys
tracker, stop = sys.argv[1], sys.argv[2]
reads = torn = changes = 0
last = None
while not os.path.exists(stop):
    with open(tracker, encoding="utf-8") as fh:
        text = fh.read()
    try:
        keys = len(json.loads(text)["lanes"]["work"]["data"])
    except ValueError:
        torn += 1
        continue
    reads += 1
    changes += keys != last
    last = keys
print(json.dumps({"reads": reads, "torn": torn, "changes": changes}))
"""

# Takes the tracker lock, leaves a half-written temp file as a writer killed in
# mid-write would, says so, and sleeps holding the lock until it is killed.
HOLDER = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("placed_helper", sys.argv[1])
helper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper)
tracker = sys.argv[2]
lock, _ = helper.paths(tracker)
with helper.locked(lock):
    folder, name = os.path.split(tracker)
    with open(os.path.join(folder, f".{name}.{os.getpid()}.tmp"), "w") as fh:
        fh.write('{"version": "1.0.0", "lan')
    print("holding", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    set_git_identity(monkeypatch)
    root = make_repo(tmp_path / "repo")
    code, _, err = cli(capsys, "init", "--repo", str(root))
    assert code == 0, err
    code, _, err = cli(capsys, "add-lane", "--repo", str(root), "work", '{"tasks": ["Work"]}')
    assert code == 0, err
    return root


@pytest.fixture
def orch(repo: Path) -> Path:
    return repo / ".orchestration"


@pytest.fixture
def tracker(orch: Path) -> Path:
    return orch / "tracker.json"


@pytest.fixture
def helper_path(orch: Path) -> Path:
    return orch / "access_tracker.py"


@pytest.fixture
def placed(helper_path: Path) -> ModuleType:
    """The helper `init` placed, imported from that file (not the package's module)."""
    spec = importlib.util.spec_from_file_location("placed_access_tracker", helper_path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def events(orch: Path) -> list[dict[str, Any]]:
    lines = (orch / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def lane_data(tracker: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(tracker.read_text(encoding="utf-8"))["lanes"]["work"]["data"]
    return data


def test_init_places_the_module_itself_as_the_helper(helper_path: Path) -> None:
    assert helper_path.read_bytes() == Path(access_tracker.__file__).read_bytes()
    assert os.access(helper_path, os.X_OK)


def test_helper_prints_the_tracker(helper_path: Path, tracker: Path) -> None:
    proc = run_helper(helper_path, str(tracker))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(tracker.read_text(encoding="utf-8"))


def test_helper_deep_merges_an_update(helper_path: Path, tracker: Path, orch: Path) -> None:
    first = {"lanes": {"work": {"progress": "10%", "data": {"a": {"x": 1}, "keep": [1, 2]}}}}
    second = {"lanes": {"work": {"progress": "50% complete", "data": {"a": {"y": 2}, "keep": [3]}}}}
    for update in (first, second):
        proc = run_helper(helper_path, str(tracker), json.dumps(update))
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    lane = json.loads(tracker.read_text(encoding="utf-8"))["lanes"]["work"]
    assert lane["progress"] == "50% complete"
    assert lane["data"] == {"a": {"x": 1, "y": 2}, "keep": [3]}  # dicts merge, lists replace
    assert lane["tasks"] == ["Work"]  # untouched fields stay
    updates = [e for e in events(orch) if e["event"] == "update"]
    assert [e["update"] for e in updates] == [first, second]
    # The result is still a valid tracker for orchestree itself.
    assert TrackerStore(tracker).read().lanes["work"].progress == "50% complete"


def test_every_update_lands_and_readers_never_see_a_torn_file(
    helper_path: Path, tracker: Path, orch: Path, tmp_path: Path
) -> None:
    start, stop = tmp_path / "start", tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tracker), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    writer = ["python3", "-c", WRITER, str(helper_path), str(tracker)]
    writers = [
        subprocess.Popen(
            [*writer, f"w{n}", str(UPDATES), str(start)],
            env=env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    start.touch()
    results = [(w.wait(timeout=120), w.communicate()[1]) for w in writers]

    # A smaller run through the helper's own command line, as agents call it.
    def agent(n: int) -> list[int]:
        codes = []
        for i in range(10):
            update = {"lanes": {"work": {"data": {f"cli{n}-{i}": i}}}}
            codes.append(run_helper(helper_path, str(tracker), json.dumps(update)).returncode)
        return codes

    with ThreadPoolExecutor(4) as pool:
        cli_codes = [code for codes in pool.map(agent, range(4)) for code in codes]
    stop.touch()
    out, _ = reader.communicate(timeout=60)

    assert results == [(0, "")] * WRITERS
    assert cli_codes == [0] * 40
    data = lane_data(tracker)
    expected = {f"w{n}-{i}": i for n in range(WRITERS) for i in range(UPDATES)}
    expected |= {f"cli{n}-{i}": i for n in range(4) for i in range(10)}
    assert data == expected
    assert len([e for e in events(orch) if e["event"] == "update"]) == WRITERS * UPDATES + 40
    seen = json.loads(out)
    assert seen["torn"] == 0
    assert seen["reads"] > 0
    assert seen["changes"] > 1  # it really read while the writers wrote
    assert TrackerStore(tracker).read().lanes["work"].data == expected
    assert not [p.name for p in orch.iterdir() if p.name.endswith(".tmp")]


def test_a_killed_lock_holder_delays_nobody(
    placed: ModuleType, helper_path: Path, tracker: Path, orch: Path
) -> None:
    holder = subprocess.Popen(
        ["python3", "-c", HOLDER, str(helper_path), str(tracker)],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        leftover = orch / f".tracker.json.{holder.pid}.tmp"
        assert leftover.exists()
        # While it lives, a writer waits, then gives up naming the holder.
        with pytest.raises(placed.LockTimeoutError) as caught:
            placed.transact(str(tracker), lambda d: d, {"event": "noop"}, timeout=0.3)
        assert caught.value.holder == holder.pid
        assert f"held by process {holder.pid}" in str(caught.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
    assert holder.returncode == -signal.SIGKILL

    began = time.monotonic()
    proc = run_helper(helper_path, str(tracker), '{"lanes": {"work": {"progress": "after"}}}')
    waited = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no "waiting", no "forcing"
    assert waited < 5  # a process start and one write; the lock timeout is 30 s
    assert json.loads(tracker.read_text(encoding="utf-8"))["lanes"]["work"]["progress"] == "after"
    assert not leftover.exists()  # the dead writer's temp file was swept


def test_a_leftover_lock_file_blocks_nobody(
    placed: ModuleType, helper_path: Path, tracker: Path, orch: Path
) -> None:
    lock = orch / "tracker.lock"
    lock.write_text("999999\n", encoding="utf-8")  # what a crashed holder might leave
    placed.transact(
        str(tracker),
        lambda d: placed.deep_merge(d, {"lanes": {"work": {"progress": "1"}}}),
        {"event": "update"},
        timeout=1.0,
    )
    proc = run_helper(helper_path, str(tracker), '{"lanes": {"work": {"progress": "2"}}}')
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(tracker.read_text(encoding="utf-8"))["lanes"]["work"]["progress"] == "2"
    assert lock.read_text(encoding="utf-8") == ""  # released locks hold no pid


def test_the_backup_is_the_previous_version(helper_path: Path, tracker: Path, orch: Path) -> None:
    before = tracker.read_bytes()
    proc = run_helper(helper_path, str(tracker), '{"lanes": {"work": {"progress": "x"}}}')
    assert proc.returncode == 0, proc.stderr
    assert (orch / "tracker.json.bak").read_bytes() == before
    assert tracker.read_bytes() != before


def test_temp_files_of_dead_writers_are_swept(
    placed: ModuleType, tracker: Path, orch: Path
) -> None:
    stale = [orch / ".tracker.json.4242.tmp", orch / ".tracker.json.bak.4243.tmp"]
    for path in stale:
        path.write_text('{"torn', encoding="utf-8")
    unrelated = orch / "notes.tmp"
    unrelated.write_text("mine", encoding="utf-8")
    placed.update(str(tracker), {"lanes": {"work": {"progress": "swept"}}})
    assert [p.exists() for p in stale] == [False, False]
    assert unrelated.read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize(
    ("update", "needle"),
    [
        ({"lanes": {"work": {"status": "completed"}}}, "lane 'work': `status` is orchestree's"),
        ({"lanes": {"work": {"attempts": "lots"}}}, "lane 'work': `attempts` is orchestree's"),
        ({"attempts": "lots"}, "`attempts` is orchestree's"),
        ({"agents": {"agent-work": {"pid": 1}}}, "`agents` is orchestree's"),
        ({"version": "9.0.0"}, "`version` is orchestree's"),
        ({"lanes": {"evil": {"tasks": ["rm -rf ~"]}}}, "there is no lane 'evil'"),
        (
            {"lanes": {"wrok": {"progress": "x"}}},
            "there is no lane 'wrok' (did you mean 'work'?); lanes",
        ),
        ({"lanes": ["work"]}, "`lanes` must be a non-empty object"),
        ({"lanes": {"work": {"progress": 5}}}, "`progress` must be text or null, not a number"),
        ({"lanes": {"work": {"progress": "x" * 1025}}}, "1025 characters long (at most 1024)"),
        ({"lanes": {"work": {"data": [1]}}}, "`data` must be a JSON object, not a list"),
        ({"lanes": {"work": {"data": {"blob": "x" * 70_000}}}}, "as JSON (at most 65536)"),
        ({"lanes": {"work": {"results": "a.md"}}}, "`results` must be a list of paths"),
        ({"lanes": {"work": {"results": ["../outside"]}}}, "leaves the repository ('..')"),
        ({"lanes": {"work": {"results": ["/etc/passwd"]}}}, "is absolute"),
        ({"lanes": {"work": {"results": ["a\nb"]}}}, "holds a control character"),
        ({"lanes": {"work": {"results": [f"r{i}" for i in range(201)]}}}, "(at most 200)"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_helper_refuses_an_update_outside_the_state_machine(
    helper_path: Path, tracker: Path, orch: Path, update: dict[str, Any], needle: str
) -> None:
    before = snapshot(orch)
    proc = run_helper(helper_path, str(tracker), json.dumps(update))
    assert proc.returncode == 2
    assert_one_line(proc.stderr, "access_tracker:", needle, "nothing was written")
    assert snapshot(orch) == before


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ('{"lanes": {"work": {"progress": NaN}}}', "not valid JSON: NaN is not a JSON number"),
        ('{"lanes": {"work": {"data": {"x": -Infinity}}}}', "not valid JSON: -Infinity is not"),
        ('{"lanes": {"work": {"data": {"x": 1e400}}}}', "not valid JSON: 1e400 is out of range"),
    ],
)
def test_helper_refuses_an_update_that_is_not_a_json_object(
    helper_path: Path, tracker: Path, orch: Path, arg: str, needle: str
) -> None:
    before = snapshot(orch)
    proc = run_helper(helper_path, str(tracker), arg)
    assert proc.returncode == 2
    assert_one_line(proc.stderr, needle)
    assert snapshot(orch) == before


def test_helper_without_arguments_shows_usage(helper_path: Path) -> None:
    proc = run_helper(helper_path)
    assert proc.returncode == 2
    assert "access_tracker.py TRACKER '<json>'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_helper_names_a_missing_tracker(helper_path: Path, tmp_path: Path) -> None:
    proc = run_helper(helper_path, str(tmp_path / "nowhere" / "tracker.json"))
    assert proc.returncode == 3
    assert_one_line(proc.stderr, "does not exist", "orchestree init")


def test_deep_merge_merges_dicts_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "l": [1], "s": "x"}
    update = {"a": {"c": {"e": 3}}, "l": [2], "s": {"now": "dict"}, "n": None}
    assert access_tracker.deep_merge(base, update) == {
        "a": {"b": 1, "c": {"d": 2, "e": 3}},
        "l": [2],
        "s": {"now": "dict"},
        "n": None,
    }
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "l": [1], "s": "x"}  # not mutated


def older_pythons() -> list[str]:
    """The python3.7 to 3.10 interpreters on this machine (pyenv's, the system's)."""
    candidates = glob.glob("/root/.pyenv/versions/*/bin/python3")
    candidates += glob.glob("/usr/bin/python3.*") + glob.glob("/usr/local/bin/python3.*")
    found = []
    for path in candidates:
        version = re.search(r"(\d+)\.(\d+)(?:\.\d+)?(?:/bin/python3)?$", path)
        if version and (3, 7) <= (int(version[1]), int(version[2])) < (3, 11):
            found.append(path)
    return sorted(found)


def test_the_helper_runs_on_the_python3_an_agent_may_have(helper_path: Path, tracker: Path) -> None:
    # Its grammar is 3.7's, whatever interpreters this machine has ...
    ast.parse(helper_path.read_text("utf-8"), feature_version=(3, 7))
    # ... and every older interpreter found reads and updates with it.
    for python in older_pythons():
        update = json.dumps({"lanes": {"work": {"progress": python}}})
        for args in ([], [update]):
            proc = subprocess.run(
                [python, str(helper_path), str(tracker), *args],
                capture_output=True,
                text=True,
                check=False,
            )
            assert (proc.returncode, proc.stderr) == (0, ""), python
        assert lane_progress(tracker) == python


def lane_progress(tracker: Path) -> Any:
    return json.loads(tracker.read_text(encoding="utf-8"))["lanes"]["work"]["progress"]


def test_a_tracker_write_syncs_the_folders_of_both_renames(
    tracker: Path, orch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracker's rename is durable, not only the ledger's: both folders are synced
    after their renames (the ledger has its own folder)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    TrackerStore(tracker).update(lambda t: setattr(t, "status", "running"), "test")
    assert str(orch) in synced
    assert str(orch / "ledger") in synced


# Writes once, forks a child that writes and exits, writes again: each process frees
# what its writes replaced, the child with its own thread (the parent's is not in it).
FORKING_WRITER = """
import os, sys
from pathlib import Path
from orchestree.tracker import TrackerStore
store = TrackerStore(Path(sys.argv[1]))
def write(text):
    def change(t):
        t.lanes["work"].progress = text
    TrackerStore(store.path).update(change, "progress")
write("parent")
child = os.fork()
if child == 0:
    write("child")
    sys.exit(0)
_, status = os.waitpid(child, 0)
write("parent again")
sys.exit(os.waitstatus_to_exitcode(status))
"""


# Replaces many files and exits at once: its thread has not freed them all by then, and
# the process waits for it at exit instead of leaving them.
MANY_REPLACES = """
import os, sys
from orchestree.access_tracker import _replace_free_later
for n in range(2000):
    for name in (f"f{n}", f"new{n}"):
        with open(os.path.join(sys.argv[1], name), "wb") as fh:
            fh.write(b"x" * 4096)
    _replace_free_later(os.path.join(sys.argv[1], f"new{n}"), os.path.join(sys.argv[1], f"f{n}"))
"""


def _python(script: str, arg: Path) -> None:
    command = [sys.executable, "-c", script, str(arg)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr


def _left_to_free(orch: Path) -> list[str]:
    return sorted(p.name for p in [*orch.iterdir(), *(orch / "ledger").iterdir()]
                  if p.name.endswith(".old.tmp"))  # fmt: skip


def test_the_files_a_write_replaces_are_freed_by_the_process_that_wrote(
    helper_path: Path, tracker: Path, orch: Path
) -> None:
    """The old `.bak` and the old ledger are freed after the writer's renames, off its
    lock (`_replace_free_later`): by the time a writer process has exited, nothing of
    them is left, whether it wrote as orchestree (tracker and ledger), forked, or as
    an agent's helper (tracker.json only)."""
    TrackerStore(tracker).update(lambda t: setattr(t, "status", "running"), "test")
    _python(FORKING_WRITER, tracker)
    assert lane_progress(tracker) == "parent again"
    assert _left_to_free(orch) == []
    proc = run_helper(helper_path, str(tracker), '{"lanes": {"work": {"progress": "agent"}}}')
    assert proc.returncode == 0, proc.stderr
    assert _left_to_free(orch) == []
    assert lane_progress(tracker) == "agent"
    many = orch / "many"
    many.mkdir()
    _python(MANY_REPLACES, many)
    assert sorted(p.name for p in many.iterdir()) == sorted(f"f{n}" for n in range(2000))


def test_files_a_killed_writer_left_to_free_are_swept_by_the_next_write(
    tracker: Path, orch: Path
) -> None:
    TrackerStore(tracker).update(lambda t: setattr(t, "status", "running"), "test")
    left = [
        orch / ".tracker.json.bak.4242.0.old.tmp",
        orch / "ledger" / ".ledger.json.4242.1.old.tmp",
    ]
    for path in left:
        path.write_bytes(b'{"old')
    TrackerStore(tracker).update(lambda t: setattr(t, "status", "running"), "again")
    assert [p.exists() for p in left] == [False, False]
    assert access_tracker.read_trusted(str(tracker))["status"] == "running"
