"""Make the README's dashboard picture from a real run.

    python scripts/dashboard_screenshot.py                 # writes docs/dashboard.png
    python scripts/dashboard_screenshot.py --out shot.png

It builds a small repository in a temporary folder, adds twelve lanes in three
dependency levels (scripted shell tasks, not an AI): one fails once and is retried,
one always fails and blocks the lane after it, two edit the same line so the second
conflicts at merge, and one carries markup in its name and in its diff, which the page
must show as text. It runs `orchestree execute` and `orchestree merge`, serves
`orchestree monitor --web`, opens one lane's diff and takes a full-page screenshot
with Debian's chromium (Playwright). tests/test_monitor_pictures.py runs the same
`build_run` and checks the page drawn from it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
GIT_ID = {
    "GIT_AUTHOR_NAME": "orchestree demo",
    "GIT_AUTHOR_EMAIL": "demo@orchestree.invalid",
    "GIT_COMMITTER_NAME": "orchestree demo",
    "GIT_COMMITTER_EMAIL": "demo@orchestree.invalid",
}
CONFIG = """\
[defaults]
agent = "shell"
max_parallel = 4
max_attempts = 2
timeout_s = 120
"""
EVIL_NAME = "<script>window.pwned = 1</script> release notes"
EVIL_LINES = ["<script>window.pwned = 1</script>", '<img src=x onerror="window.pwned = 2">']
RETRIED = "cli"  # fails its first attempt, succeeds on the second
SHOWN = "notes"  # the lane whose diff the picture opens


def _edit(path: str, text: str, seconds: float) -> list[str]:
    """Tasks that take a moment (a bar worth seeing), then write one file."""
    folder = os.path.dirname(path) or "."
    return [
        f"sleep {seconds}",
        f"mkdir -p {folder}",
        f"printf '%s\\n' {json.dumps(text)} >> {path}",
    ]


def lanes(flags: Path) -> dict[str, Any]:
    """Twelve lanes in three dependency levels (12 dependency arrows)."""
    once = f"test -f {flags}/cli || {{ touch {flags}/cli; echo 'first try fails'; exit 1; }}"
    evil = "\\n".join(EVIL_LINES)
    return {
        "schema": {
            "name": "Database schema",
            "tasks": _edit("db/schema.sql", "create table t;", 1.5),
        },
        "config": {"name": "Config loader", "tasks": _edit("src/config.py", "LEVEL = 1", 1)},
        "fixtures": {"name": "Test fixtures", "tasks": _edit("tests/fixtures.json", "{}", 0.5)},
        "notes": {
            "name": EVIL_NAME,
            "tasks": ["sleep 1", "mkdir -p docs", f"printf '# Notes\\n{evil}\\n' > docs/notes.md"],
        },
        "api": {
            "name": "HTTP API",
            "depends_on": ["schema"],
            "tasks": _edit("src/app.py", "ROUTE = '/api'", 2),
        },
        RETRIED: {
            "name": "Command line",
            "depends_on": ["config"],
            "tasks": [once, *_edit("src/cli.py", "main = None", 1)],
        },
        "storage": {
            "name": "Storage layer",
            "depends_on": ["schema", "fixtures"],
            "tasks": _edit("src/app.py", "ROUTE = '/storage'", 1),
        },
        "docs": {
            "name": "User guide",
            "depends_on": ["notes"],
            "tasks": _edit("docs/guide.md", "# Guide", 0.5),
        },
        "flaky": {
            "name": "Network probe",
            "tasks": ["sleep 0.5", "echo 'no route to host'; exit 2"],
            "depends_on": ["config"],
            "max_attempts": 1,
        },
        "web": {
            "name": "Web front end",
            "depends_on": ["api", RETRIED],
            "tasks": _edit("web/index.html", "<h1>app</h1>", 1),
        },
        "e2e": {
            "name": "End-to-end tests",
            "depends_on": ["api", "storage"],
            "tasks": _edit("tests/test_e2e.py", "def test(): pass", 1),
        },
        "changelog": {
            "name": "Changelog",
            "depends_on": ["docs", "flaky"],
            "tasks": _edit("CHANGELOG.md", "## 1.0", 0.5),
        },
    }


def environment(home: Path) -> dict[str, str]:
    """orchestree's environment: the git identity, no inherited git state, this venv."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    bin_dir = str(Path(sys.executable).parent)
    path = f"{bin_dir}{os.pathsep}{base.get('PATH', '')}"
    return {**base, **GIT_ID, "HOME": str(home), "PATH": path, "PYTHONUNBUFFERED": "1"}


def orchestree(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "orchestree", args[0], "--repo", str(repo), *args[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode not in (0, 1):  # 1: the run finished with a failed lane, as planned
        raise RuntimeError(f"orchestree {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def build_run(folder: Path) -> Path:
    """A repository under `folder` with the twelve lanes run and merged; returns it."""
    repo, flags = folder / "shop", folder / "flags"
    flags.mkdir(parents=True)
    repo.mkdir()
    env = environment(folder)
    (repo / "README.md").write_text("# shop\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("ROUTE = '/'\n")
    (repo / "orchestree.toml").write_text(CONFIG)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "shop: a start"]):  # fmt: skip
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    orchestree(repo, env, "init")
    (folder / "lanes.json").write_text(json.dumps(lanes(flags)))
    orchestree(repo, env, "add-lane", "--from", str(folder / "lanes.json"))
    orchestree(repo, env, "execute")
    orchestree(repo, env, "merge")
    return repo


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shoot(browser: Any, url: str, out: Path, lane: str = SHOWN) -> None:
    """A full-page screenshot of the dashboard at `url` with `lane`'s diff open, taken
    with `browser` (a Playwright chromium)."""
    from playwright.sync_api import expect

    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        tab.goto(url)
        expect(tab.locator("#graph svg g.node").first).to_be_visible(timeout=20_000)
        tab.locator(f'tr[data-lane="{lane}"] button.diff-button').click()
        expect(tab.locator("#diff-text .dl.add").first).to_be_visible(timeout=20_000)
        tab.wait_for_timeout(1500)  # one more poll: the log tail is in
        out.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(out), full_page=True)
    finally:
        tab.close()


def shoot_with_chromium(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            shoot(browser, url, out)
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    out = parser.parse_args().out.resolve()
    folder = Path(tempfile.mkdtemp(prefix="orchestree-dashboard-"))
    repo = build_run(folder)
    env = environment(folder)
    port = _free_port()
    argv = [sys.executable, "-m", "orchestree", "monitor", "--repo", str(repo), "--web",
            "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "api/status", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the monitor did not start") from None
                time.sleep(0.2)
        shoot_with_chromium(url, out)
    finally:
        server.terminate()
        server.wait(10)
    print(f"wrote {out} (the run: {repo})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
