"""A new user's first hour (issue 21, items 8, 9, 10, 13, 14) and agent text shown as
text (issue 20): what the views, summaries and exit codes say, driven as the user did.

Real repositories in `tmp_path`, real scripted agents, the real CLI (in this process, or
the installed program in a pipe or in a pseudo-terminal when the test is about a TTY).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from _monitor_server import request, serve
from exec_helpers import (
    BASE_CONFIG,
    ORCHESTREE,
    add_lanes,
    agent_config,
    cli,
    git,
    make_repo,
    spawn,
    statuses,
    tracker,
    wait_for,
    write_script,
)
from pipeline_helpers import pipeline_repo, script_agent

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>78]")
# What a login shell does first: make the terminal the session's controlling terminal.
AS_LOGIN = "import fcntl, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
LAUNCH = "from orchestree.cli import main; sys.exit(main(sys.argv[1:]))"
HOSTILE = "[link=http://x]click[/link] \x1b[2J [bold red]alarm\r"
SHOWN = "[link=http://x]click[/link] \\x1b[2J [bold red]alarm\\r"


class Term:
    """`orchestree ARGS` in a real pseudo-terminal of `rows` x `cols`, as a user runs it."""

    def __init__(self, args: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AS_LOGIN + LAUNCH, *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.raw += os.read(self.master, 65536)
            except OSError:  # the child closed its side
                time.sleep(timeout)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not shown in {timeout} s:\n{self.text[-3000:]}")
            self._read(0.1)

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        code = self.proc.wait(timeout=5)
        self._read(0.2)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def write_lanes(repo: Path, n: int, what: str, verify: str) -> None:
    """`n` lanes that each write their own file (so each merges), and a verify command
    run once a lane (`batch = 1`): these tests watch each lane's own verify; batches of
    lanes sharing one verify run are tests/test_batch.py's."""
    config = (repo / "orchestree.toml").read_text()
    config += f'\n[merge]\nverify = "{verify}"\nbatch = 1\n'
    (repo / "orchestree.toml").write_text(config)
    git(repo, "commit", "-qam", "verify merges")
    add_lanes(repo, {f"{what}{i}": {"tasks": [f"echo {i} > {what}{i}.txt"]} for i in range(n)})
    assert cli(repo, "execute").code == 0


# Item 8 ---------------------------------------------------------------------------------

IDLE = 'print(f"{lane}: looked; nothing to change")\n'


def test_full_where_every_lane_changed_nothing_says_so_instead_of_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"{c}.py": f"{c} = 1  # TODO: name {c}\n" for c in "abc"}
    config = (
        '[defaults]\nagent = "idle"\nkill_grace_s = 0.5\nbuiltin_probes = false\n\n'
        '[probes.markers]\nbuiltin = "markers"\n' + script_agent(tmp_path, "idle", IDLE)
    )
    repo = pipeline_repo(tmp_path, monkeypatch, files, config, init=False)

    result = cli(repo, "full")

    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert sum("completed but changed nothing" in line for line in lines) == 3
    summary = lines[lines.index(next(x for x in lines if x.startswith("summary: "))) :]
    assert summary[0] == "summary: 3 lanes: 0 merged, 3 changed nothing; 1 probe: 1 merged"
    assert sorted(summary[1:]) == [
        "  · markers-a.py: changed nothing",
        "  · markers-b.py: changed nothing",
        "  · markers-c.py: changed nothing",
        "  ✓ probe markers: merged",
    ]
    moved = [line for line in lines if line.startswith("main stayed at")]
    assert moved, result.out
    assert moved[-1].endswith("(3 changed nothing)")
    assert not any(re.search(r"\b[1-9] merged\b", line) for line in moved)


# Item 9 ---------------------------------------------------------------------------------


def test_merge_without_a_tty_prints_each_lane_as_its_verify_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    write_lanes(repo, 3, "lane", "sleep 0.8")
    seen: list[tuple[float, str]] = []
    with spawn(repo, "merge") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append((time.monotonic(), line.rstrip("\n")))
        assert proc.wait(timeout=60) == 0
    ended = time.monotonic()
    lane_lines = [(t, line) for t, line in seen if line.startswith("merged ")]
    assert [line.split()[1] for _, line in lane_lines] == ["lane0", "lane1", "lane2"]
    # The first lane is said when its verify ends, not after the other two (1.6 s).
    assert ended - lane_lines[0][0] >= 1.2, seen
    assert seen[-1][1].startswith("main moved ")
    assert seen[-1][1].endswith(" (3 merged)")


def test_merge_on_a_tty_names_the_lane_the_step_and_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    write_lanes(repo, 2, "slow", "sleep 1.2")
    term = Term(["merge", "--repo", str(repo)])
    try:
        term.expect(r"merge: verifying slow0 · \d+\.\ds \(\d+s in all\)")
        term.expect(r"merge: verifying slow1 · \d+\.\ds")
        assert term.wait() == 0
    finally:
        term.close()
    assert re.search(r"merged\s+slow0\s+as [0-9a-f]{10}", term.text)
    assert "main moved" in term.text
    assert statuses(repo) == {"slow0": "merged", "slow1": "merged"}


def test_probes_on_a_tty_name_the_running_probe_and_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = (
        '[defaults]\nagent = "shell"\nbuiltin_probes = false\n\n'
        '[probes.markers]\nbuiltin = "markers"\n\n'
        '[probes.tests]\nbuiltin = "tests"\ncommand = "sleep 1.5"\n'
    )
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1  # TODO: a\n"}, config)
    term = Term(["probes", "--repo", str(repo)], cols=100)
    try:
        term.expect(r"1/2 lanes done · running: tests \d+s · \d+s in all")
        assert term.wait() == 0
    finally:
        term.close()
    assert re.search(r"merged\s+markers\s+as [0-9a-f]{10}", term.text)
    assert re.search(r"main moved \w+ -> \w+ \(2 merged\)", term.text)


def test_cleanup_says_each_worktree_as_it_goes_on_a_tty_and_in_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {f"w{i}": {"tasks": [f"echo {i} > w{i}.txt"]} for i in range(3)})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 0
    (repo / ".worktrees" / "agent-w2" / "notes.txt").write_text("uncommitted\n")

    term = Term(["cleanup", "--repo", str(repo)])
    try:
        term.expect(r"cleanup( ·|:)")  # the live line
        assert term.wait() == 0
    finally:
        term.close()
    assert "removed worktree .worktrees/agent-w0" in term.text
    assert "kept worktree .worktrees/agent-w2 (uncommitted changes: notes.txt)" in term.text

    (repo / ".worktrees" / "agent-w2" / "notes.txt").unlink()
    piped = subprocess.run(
        [ORCHESTREE, "cleanup", "--repo", str(repo)], capture_output=True, text=True, check=False
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == [
        "removed worktree .worktrees/agent-w2",
        "deleted branch lane-w2",
    ]


# Item 10 --------------------------------------------------------------------------------


def test_merge_again_exits_1_while_a_conflict_is_outstanding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(
        repo,
        {
            "a": {"tasks": ["echo from a > shared.txt"], "priority": "high"},
            "b": {"tasks": ["echo from b > shared.txt"]},
        },
    )
    assert cli(repo, "execute").code == 0

    first = cli(repo, "merge")
    again = cli(repo, "merge")
    check = cli(repo, "merge", "--check")

    assert first.code == 1, first.out
    assert statuses(repo) == {"a": "merged", "b": "conflict"}
    assert again.code == 1, again.out
    assert "still outstanding from earlier runs: b (conflict)" in again.out
    assert check.code == 1, check.out
    assert git(repo, "show", "main:shared.txt") == "from a"


def test_merge_again_exits_1_while_a_lane_has_failed_and_0_when_all_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"ok": {"tasks": ["echo ok > ok.txt"]}})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 0
    assert cli(repo, "merge").code == 0  # nothing outstanding: all good

    add_lanes(repo, {"bad": {"tasks": ["exit 3"], "max_attempts": 1}})
    assert cli(repo, "execute").code == 1
    result = cli(repo, "merge")
    assert result.code == 1, result.out
    assert "still outstanding from earlier runs: bad (failed)" in result.out


# Item 13 --------------------------------------------------------------------------------


def test_execute_after_full_shows_the_execute_phase_while_lanes_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"first": {"tasks": ["echo 1 > first.txt"]}})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 0
    assert tracker(repo)["phase"] == 4
    go = tmp_path / "go"
    add_lanes(repo, {"later": {"tasks": [f"while [ ! -e {go} ]; do sleep 0.05; done"]}})
    with spawn(repo, "execute") as proc:
        try:
            wait_for(lambda: statuses(repo)["later"] == "running", 30, "the lane to run")
            shown = cli(repo, "monitor", "--once")
            status = cli(repo, "status")
        finally:
            go.write_text("go")
            proc.communicate(timeout=60)
    assert "phase 3/4 execute" in shown.out, shown.out
    assert "phase 4/4" not in shown.out
    assert "phase 3 (execute), running" in " ".join(status.out.split())


def test_at_80x24_the_failure_shows_before_the_notices_folded_into_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    lanes = {f"quiet{i}": {"tasks": ["true"]} for i in range(6)}
    add_lanes(repo, {**lanes, "broken": {"tasks": ["exit 5"], "max_attempts": 1}})
    assert cli(repo, "execute").code == 1

    term = Term(["monitor", "--repo", str(repo), "--interval", "0.2"], rows=24, cols=80)
    try:
        term.expect(r"Warnings \(2\)")
        term.expect(r"! lane broken failed: exited with code 5")
        term.expect(r"! 6 lanes finished without changing any file")
        os.write(term.master, b"q")
        assert term.wait() == 0
    finally:
        term.close()
    assert "more warnings" not in term.text


# Item 14 --------------------------------------------------------------------------------

LONG = "60% - writing the projection tests for the orders table and the customers"


def test_status_piped_at_80_columns_keeps_words_whole_and_names_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    update = json.dumps({"lanes": {"api-projection": {"progress": LONG}}})
    add_lanes(
        repo,
        {
            "api-projection": {
                "tasks": [f"python3 access_tracker.py \"$ORCHESTREE_TRACKER\" '{update}'"]
            },
            "docs": {"tasks": ["true"], "depends_on": ["api-projection"]},
            # Ids as long as the planner makes them on a real repository.
            "inventory-untested-src-click": {"tasks": ["true"]},
            "inventory-large-src-click-termui.py": {
                "tasks": ["true"],
                "depends_on": ["inventory-untested-src-click"],
            },
        },
    )
    assert cli(repo, "execute").code == 0
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.run(
        [ORCHESTREE, "status", "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    words = proc.stdout.split()
    for word in LONG.split():  # every word of the progress whole, none cut in pieces
        assert word in words, (word, proc.stdout)
    assert "inventory-large-src-click-termui.py" in words
    assert "inventory-untested-src-click;" in words  # "after <id>; changed nothing"
    row = next(line for line in lines if line.startswith("api-projection"))
    assert row.split()[:4] == ["api-projection", "completed", "medium", "shell"]
    assert "(default)" not in proc.stdout
    assert "after api-projection" in proc.stdout  # dependencies join the progress text


def test_a_cancelled_lane_says_cancelled_once_and_what_stopped_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"long": {"tasks": ["sleep 60"]}})
    with spawn(repo, "execute") as proc:
        try:
            wait_for(lambda: tracker(repo)["agents"].get("agent-long", {}).get("pid"), 30, "pid")
            assert cli(repo, "cancel", "long").code == 0
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    said = "its agent was stopped (orchestree cancel or Ctrl-C); worktree kept"
    assert f"✗ long: cancelled: {said}" in out
    assert "cancelled (cancelled)" not in out
    assert tracker(repo)["lanes"]["long"]["error"] == said


def test_version_and_the_one_spelling_of_initialised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = subprocess.run([ORCHESTREE, "--version"], capture_output=True, text=True, check=False)
    assert (version.returncode, version.stdout) == (0, "orchestree 0.1.0\n")
    repo = make_repo(tmp_path, monkeypatch)
    assert tracker(repo)["status"] == "initialised"
    assert "phase 0 (initialised), initialised" in " ".join(cli(repo, "status").out.split())
    # A tracker written with the other spelling still reads, and says it the README's way.
    path = repo / ".orchestration" / "tracker.json"
    path.write_text(path.read_text().replace('"initialised"', '"initialized"'))
    shown = cli(repo, "status")
    assert shown.code == 0, shown.err
    assert "initialized" not in shown.out
    monitor = cli(repo, "monitor", "--once")
    assert "status: initialised" in monitor.out
    assert "initialized" not in monitor.out


def test_plan_dry_run_is_a_readable_list_and_json_with_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"a.py": "a = 1  # TODO: name a\n", "b.py": "b = 1  # FIXME: name b\n"}
    config = 'agent = "shell"\nbuiltin_probes = false\n\n[probes.markers]\nbuiltin = "markers"\n'
    repo = pipeline_repo(tmp_path, monkeypatch, files, "[defaults]\n" + config)
    assert cli(repo, "probes").code == 0

    readable = cli(repo, "plan", "--dry-run")
    raw = cli(repo, "plan", "--dry-run", "--json")

    assert readable.code == 0, readable.err
    assert readable.out.splitlines()[0] == "plan (dry run; nothing registered): 2 lane(s)"
    assert re.search(r"^  markers-b\.py \[\w+\]: \S", readable.out, re.M), readable.out
    assert "{" not in readable.out
    assert sorted(json.loads(raw.out)["lanes"]) == ["markers-a.py", "markers-b.py"]
    assert set(statuses(repo)) == {"markers"}  # registered nothing


def test_plan_from_and_add_lane_from_take_either_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    by_id = tmp_path / "by-id.json"
    by_id.write_text(json.dumps({"one": {"tasks": ["true"]}, "two": {"tasks": ["true"]}}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": "1.0", "lanes": {"three": {"tasks": ["true"]}}}))

    planned = cli(repo, "plan", "--from", str(by_id))
    added = cli(repo, "add-lane", "--from", str(plan))

    assert planned.code == 0, planned.err
    assert added.code == 0, added.err
    assert added.out == "added 1 lane(s): three\n"
    assert set(statuses(repo)) == {"one", "two", "three"}


def test_retry_help_names_conflicted_lanes() -> None:
    proc = subprocess.run(
        [ORCHESTREE, "retry", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "conflicted" in proc.stdout.split("Arguments:")[1]


def test_the_dask_executor_without_a_remote_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = BASE_CONFIG + '\n[executor]\nkind = "dask"\nworkers = 1\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(repo, {"a": {"tasks": ["echo a > a.txt"]}})
    before = git(repo, "for-each-ref")

    result = cli(repo, "execute")

    assert result.code == 3, result.out + result.err
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith(
        "orchestree: [executor] remote = 'origin' is neither a git remote of"
    )
    assert "git remote add origin" in result.err
    assert "git push" not in result.err
    assert git(repo, "for-each-ref") == before
    assert statuses(repo) == {"a": "pending"}


# Issue 20: agent text is shown as text ---------------------------------------------------

HOSTILE_AGENT = f"""
text = {HOSTILE!r}
update = json.dumps({{"lanes": {{lane: {{"progress": text}}}}}})
subprocess.run(["python3", "access_tracker.py", os.environ["ORCHESTREE_TRACKER"], update],
               check=True)
print("log:", text, flush=True)
"""


def test_markup_and_escape_sequences_from_an_agent_are_shown_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = write_script(tmp_path / "hostile.py", "lane = sys.argv[1]\n" + HOSTILE_AGENT)
    repo = make_repo(tmp_path, monkeypatch, agent_config("hostile", script))
    add_lanes(repo, {"evil": {"agent": "hostile", "tasks": ["report progress"]}})
    assert cli(repo, "execute").code == 0
    assert tracker(repo)["lanes"]["evil"]["progress"] == HOSTILE  # stored as written
    monkeypatch.setenv("COLUMNS", "200")

    status = cli(repo, "status")
    once = cli(repo, "monitor", "--once")
    log = cli(repo, "logs", "evil")
    raw = subprocess.run(
        [ORCHESTREE, "logs", "evil", "--raw", "--repo", str(repo)], capture_output=True, check=False
    )
    with serve(repo) as port:
        code, _, body = request(port)

    for shown in (status.out, once.out, log.out):
        assert "\x1b" not in shown
        assert "\r" not in shown
        assert SHOWN in shown, shown
    assert f"log: {SHOWN}\n" in log.out
    assert raw.returncode == 0
    assert f"log: {HOSTILE}\n".encode() in raw.stdout  # --raw keeps the bytes
    assert f"log: {HOSTILE}\n" in cli(repo, "logs", "evil", "--raw").out  # a text stream too
    assert code == 200
    snapshot = json.loads(body)["snapshot"]  # what the dashboard renders
    (lane,) = [lane for lane in snapshot["lanes"] if lane["id"] == "evil"]
    assert lane["progress"] == SHOWN
