"""Real git repositories for the probe and planner tests, built in tmp_path.

Not a conftest: the other test modules of the project keep their own fixtures.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from orchestree.models import ProbeResult
from orchestree.probes import load_probe_output

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Probe Test",
    "GIT_AUTHOR_EMAIL": "probe-test@example.com",
    "GIT_COMMITTER_NAME": "Probe Test",
    "GIT_COMMITTER_EMAIL": "probe-test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def user_tools() -> str:
    """A folder with a `pytest` of "the user's" (outside orchestree's own virtualenv,
    which the tests probe never uses), running this interpreter's pytest."""
    folder = Path(tempfile.gettempdir()) / f"orchestree-tests-user-tools-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    shim = folder / "pytest"
    text = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pytest "$@"\n'
    if not shim.exists() or shim.read_text(encoding="utf-8") != text:
        tmp = folder / f".pytest.{os.getpid()}"
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, shim)
    return str(folder)


USER_TOOLS = user_tools()
# The user's pytest, the user's PATH, and this interpreter's bin (ruff) to be found.
TOOLS_PATH = os.pathsep.join(
    [USER_TOOLS, os.environ.get("PATH", ""), str(Path(sys.executable).parent)]
)
ROOT = Path(__file__).resolve().parents[1]

# A small project with exactly one TODO, one FIXME, one failing test and one lint error,
# plus decoys that no probe may report: prose, a binary, vendored and generated files.
BUGGY: dict[str, str | bytes] = {
    "conftest.py": "",
    "src/app.py": "def add(a, b):\n    # TODO: handle overflow\n    return a + b\n",
    "src/util.py": (
        "import os\n\n\ndef name():\n    return 'util'  # FIXME(ann): read it from the config\n"
    ),
    "tests/test_app.py": (
        "from src.app import add\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_add_negative():\n    assert add(-1, -1) == -3\n"
    ),
    "README.md": "# demo\n\nThe TODO list lives in the wiki.\n",
    "data.bin": b"\x00\x01# TODO: inside a binary file\n",
    "vendor/lib.py": "# TODO: vendored, not ours\n",
    "docs/_generated/old/state_probe.md": "<!-- TODO: generated, not ours -->\n",
}


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def make_repo(root: Path, files: dict[str, str | bytes], *, commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "init")
    return root


def run_probe(
    root: Path, builtin: str, *args: str, probe_id: str | None = None, path: str = TOOLS_PATH
) -> subprocess.CompletedProcess[str]:
    """The entry point exactly as the runner launches it, inside the repository."""
    probe_id = probe_id or builtin
    argv = [sys.executable, "-m", "orchestree.probes", builtin, "--root", "."]
    argv += ["--out", f"docs/_generated/{probe_id}", "--probe-id", probe_id, *args]
    env = {**os.environ, **GIT_ENV, "PATH": path}
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)


def probe_output(root: Path, probe_id: str) -> ProbeResult:
    return load_probe_output(root / "docs/_generated" / probe_id / "state_probe.json")
