"""runlock.py: one orchestrator at a time. A second run is refused at once with the
holder named; the kernel drops a SIGKILLed holder's lock, so the next run goes ahead."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import holding
from orchestree.errors import EnvironmentRefused
from orchestree.layout import Layout
from orchestree.runlock import run_lock

# Holds the run lock of the layout at argv[1] until its stdin closes.
HOLDER = (
    "import sys; from pathlib import Path\n"
    "from orchestree.layout import Layout; from orchestree.runlock import run_lock\n"
    "with run_lock(Layout(Path(sys.argv[1])), 'execute'):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.readline()\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the run lock of `tmp_path`."""
    with holding(HOLDER, str(tmp_path)) as proc:
        yield proc


def test_the_lock_is_taken_and_released(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    with run_lock(layout, "merge"):
        assert layout.run_lock.read_text(encoding="utf-8") == str(os.getpid())
    with run_lock(layout, "cleanup"):  # released: taken again at once
        pass
    assert layout.run_lock.read_text(encoding="utf-8") == ""  # no pid left behind


def test_the_orchestration_folder_is_made_when_missing(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "fresh")
    (tmp_path / "fresh").mkdir()
    with run_lock(layout, "execute"):
        assert layout.run_lock.exists()


def test_a_second_run_is_refused_at_once_naming_the_holder(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    layout = Layout(tmp_path)
    began = time.monotonic()
    with pytest.raises(EnvironmentRefused) as caught, run_lock(layout, "merge"):
        pytest.fail("the lock was taken while another process held it")
    assert time.monotonic() - began < 5  # refused, not waited for
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"cannot merge: process {holder.pid} holds {layout.run_lock}; wait for it to finish"
    )
    assert caught.value.exit_code == 3


def test_the_lock_of_a_sigkilled_run_is_taken_over(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    layout = Layout(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert layout.run_lock.read_text(encoding="utf-8") == str(holder.pid)  # its pid stays
    with run_lock(layout, "execute"):
        assert layout.run_lock.read_text(encoding="utf-8") == str(os.getpid())


def test_a_refused_run_leaves_the_holders_lock_alone(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    layout = Layout(tmp_path)
    for _ in range(2):
        with pytest.raises(EnvironmentRefused), run_lock(layout, "cleanup"):
            pass
    assert layout.run_lock.read_text(encoding="utf-8") == str(holder.pid)
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    with run_lock(layout, "cleanup"):
        pass


def test_the_lock_is_released_when_the_body_raises(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    with pytest.raises(RuntimeError), run_lock(layout, "merge"):
        raise RuntimeError("the run failed")
    with run_lock(layout, "merge"):
        pass
