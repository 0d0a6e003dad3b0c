from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from _monitor_trackers import agent, big_tracker, lane, tracker, write
from orchestree.access_tracker import now_iso
from orchestree.errors import TrackerError, UserError
from orchestree.monitor import run_monitor
from orchestree.monitor.console import render
from orchestree.monitor.source import snapshot_now

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>78]")
# The monitor as a real process, the way `orchestree monitor` runs it.
LAUNCH = (
    "import sys; from pathlib import Path; from orchestree.monitor import run_monitor; "
    "sys.exit(run_monitor(Path(sys.argv[1]), web=False, once=False, "
    "interval=float(sys.argv[2]), host=None, port=None))"
)

# What a login shell does first: make the terminal the session's controlling
# terminal, so that Ctrl-C typed into it is a real SIGINT to the monitor.
AS_LOGIN = "import fcntl, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "


def demo(progress: str = "writing tests") -> dict[str, object]:
    return tracker(
        {
            "db-projection": lane(
                name="DB projection",
                status="running",
                priority="high",
                progress=progress,
                attempts=1,
                max_attempts=2,
                started_at=now_iso(),
                results=["docs/_generated/db-projection/report.md"],
            ),
            "api-docs": lane(status="failed", error="exit code 1", attempts=1),
            "ui": lane(status="blocked", error="dependency api-docs failed"),
            "setup": lane(status="merged", cost_usd=0.42),
        },
        {
            "agent-db-projection": agent("db-projection", status="running"),
            "agent-api-docs": agent("api-docs", status="failed", exit_code=1),
            "agent-setup": agent("setup", status="completed", exit_code=0),
        },
        phase=3,
        status="running",
        updated_at=now_iso(),
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(tmp_path / ".orchestration" / "tracker.json", demo())
    return tmp_path


def test_once_prints_one_plain_frame(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_monitor(repo, web=False, once=True, interval=1, host=None, port=None)
    out = capsys.readouterr().out
    assert code == 0
    assert not ANSI.search(out), "no TTY: plain text"
    for text in (
        "phase 3/4 execute",
        "db-projection · DB projection",
        "writing tests",
        "1/2",
        "→",
        "✗",
        "✓",
        "running 1",
        "merged 1",
        "cost $0.42",
        "lane api-docs failed: exit code 1; log: .orchestration/logs/agent-api-docs.log",
        "lane ui is blocked: dependency api-docs failed",
        "Warnings (2)",
    ):
        assert text in out, text
    assert "lanes finished" in out
    assert "75% (3/4)" in out  # blocked has stopped too


def test_once_without_a_tracker_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TrackerError, match=r"tracker\.json does not exist; run `orchestree init`"):
        run_monitor(tmp_path, web=False, once=True, interval=1, host=None, port=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "--interval must be above 0"),
        ({"port": 6000}, "--host and --port only apply to --web"),
        ({"web": True, "once": True}, "--once and --all apply to the console monitor"),
    ],
)
def test_bad_options_are_user_errors(repo: Path, kwargs: dict[str, object], message: str) -> None:
    options: dict[str, object] = {
        "web": False,
        "once": False,
        "interval": 1.0,
        "host": None,
        "port": None,
    }
    with pytest.raises(UserError, match=message):
        run_monitor(repo, **{**options, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("height", [24, 40, 60])
def test_a_live_frame_fits_the_screen_and_says_what_it_hides(height: int) -> None:
    snap = snapshot_now(big_tracker(500), 3600)
    out = io.StringIO()
    Console(file=out, width=120, height=height).print(render(snap, "a notice", height))
    lines = out.getvalue().splitlines()
    assert len(lines) <= height
    assert "more lanes" in out.getvalue()
    assert lines[0].startswith("orchestree /srv/demo (main)")


class Pty:
    """The monitor in a real pseudo-terminal, its controlling terminal, as a user runs it."""

    def __init__(self, repo: Path, interval: float, rows: int = 40, cols: int = 220) -> None:
        self.master, self.slave = pty.openpty()
        winsize = struct.pack("HHHH", rows, cols, 0, 0)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, winsize)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AS_LOGIN + LAUNCH, str(repo), str(interval)],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.raw = b""

    def expect(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if text in ANSI.sub("", self.raw.decode("utf-8", "replace")):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                screen = ANSI.sub("", self.raw.decode("utf-8", "replace"))[-3000:]
                raise AssertionError(f"{text!r} not shown within {timeout} s; screen:\n{screen}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                self.raw += os.read(self.master, 65536)

    def mark(self) -> None:
        """Forget what was shown so far; later `expect`s see only new frames."""
        self.raw = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                self.raw += os.read(self.master, 65536)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def term(repo: Path) -> Iterator[Pty]:
    session = Pty(repo, interval=0.2)
    try:
        yield session
    finally:
        session.close()


def _terminal_is_restored(session: Pty, before: list[object]) -> None:
    assert termios.tcgetattr(session.slave)[3] == before[3], "local modes (echo, icanon) restored"
    assert b"\x1b[?1049l" in session.raw, "left the alternate screen"
    assert b"\x1b[?25h" in session.raw, "cursor shown again"


def test_live_view_follows_the_tracker_and_q_quits(repo: Path, term: Pty) -> None:
    before = termios.tcgetattr(term.slave)
    path = repo / ".orchestration" / "tracker.json"
    term.expect("db-projection · DB projection")
    term.expect("writing tests")
    term.expect("Warnings (2)")

    write(path, demo(progress="halfway there"))
    term.expect("halfway there")

    path.unlink()
    term.mark()
    term.expect("does not exist; run `orchestree init`")
    term.expect("showing the last good read")
    term.expect("halfway there")

    path.write_text('{"version": "1.0.0", "lanes": {', encoding="utf-8")
    term.expect("is not valid JSON")

    write(path, demo(progress="all done"))
    term.mark()
    term.expect("all done")

    term.send(b"q")
    assert term.wait() == 0
    _terminal_is_restored(term, before)


def test_live_view_quits_cleanly_on_ctrl_c(term: Pty) -> None:
    before = termios.tcgetattr(term.slave)
    term.expect("db-projection · DB projection")
    term.send(b"\x03")
    assert term.wait() == 0
    _terminal_is_restored(term, before)


def test_live_view_waits_for_a_tracker_that_is_not_there_yet(tmp_path: Path) -> None:
    session = Pty(tmp_path, interval=0.2)
    try:
        session.expect("does not exist; run `orchestree init`")
        write(tmp_path / ".orchestration" / "tracker.json", demo())
        session.expect("db-projection · DB projection")
        session.send(b"q")
        assert session.wait() == 0
    finally:
        session.close()


def test_without_a_tty_live_mode_prints_a_plain_frame_per_change(repo: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(repo), "0.1"],
        env={**os.environ, "COLUMNS": "80"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out = b""

        def until(text: str) -> None:
            nonlocal out
            deadline = time.monotonic() + 10
            while text.encode() not in out:
                assert time.monotonic() < deadline, f"{text!r} not printed: {out.decode()}"
                ready, _, _ = select.select([proc.stdout], [], [], 0.2)
                if ready:
                    out += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]

        until("writing tests")
        write(repo / ".orchestration" / "tracker.json", demo(progress="second frame"))
        until("second frame")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        out += _ or b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert not ANSI.search(text)
    # One frame per change, not one per interval.
    assert text.count("phase 3/4 execute") == 2
