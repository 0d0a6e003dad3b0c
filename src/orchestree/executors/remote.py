"""The shared git remote that remote lanes clone from and push to (DESIGN.md §12).

The orchestrator publishes each lane's start commit there (`refs/orchestree/base/<sha>`)
and fetches finished lane branches back. A worker clones with a per-host reference
cache, claims its attempt with an atomic ref, and pushes the lane branch with a lease.
Every git call goes through `git.run`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from orchestree import git
from orchestree.errors import EnvironmentRefused, GitError

REJECTED = ("stale info", "rejected", "failed to push", "already exists")


def remote_url(root: Path, remote: str) -> str:
    """A URL workers can use: a configured remote's URL, or the path/URL given.

    Refused in one line, before any cluster starts, when `remote` is none of these."""
    proc = git.run("remote", "get-url", remote, cwd=root, check=False)
    url = proc.stdout.strip() if proc.returncode == 0 else remote
    if "://" not in url and not url.startswith("git@") and (root / url).exists():
        return str((root / url).resolve())
    if proc.returncode != 0 and "://" not in url and ":" not in url:
        raise EnvironmentRefused(
            f"[executor] remote = {remote!r} is neither a git remote of {root} nor an "
            "existing path or URL; the Dask executor's workers clone from it: add it "
            f"(`git remote add {remote} <url>`, e.g. a bare repository made with "
            "`git init --bare`) or set [executor] remote in orchestree.toml"
        )
    return url


def push_start(root: Path, url: str, sha: str) -> None:
    """Put a commit on the remote as `refs/orchestree/base/<sha>` (idempotent)."""
    try:
        git.run("push", "-q", url, f"{sha}:refs/orchestree/base/{sha}", cwd=root)
    except GitError as exc:
        said = [line for line in exc.stderr.strip().splitlines() if line.strip()]
        why = said[0].removeprefix("fatal: ") if said else f"exit {exc.code}"
        raise EnvironmentRefused(
            f"cannot push to the executor's remote {url} ({why}); check [executor] "
            "remote in orchestree.toml and that this machine can push there"
        ) from None


def heads(root: Path, url: str, pattern: str) -> dict[str, str]:
    """Refs on the remote matching `pattern` (e.g. `refs/heads/lane-*`) -> sha."""
    raw = git.run("ls-remote", url, pattern, cwd=root).stdout
    found: dict[str, str] = {}
    for line in raw.splitlines():
        sha, _, ref = line.partition("\t")
        if ref:
            found[ref] = sha
    return found


def fetch_ref(root: Path, url: str, ref: str, into: str | None = None) -> str | None:
    """Fetch `ref` from the remote into the local `into` (default: the same name).

    Returns the fetched commit, or None when the remote has no such ref."""
    into = into or ref
    with git.admin_lock(root):
        proc = git.run("fetch", "-q", "--no-tags", url, f"+{ref}:{into}", cwd=root, check=False)
    if proc.returncode != 0:
        return None
    return git.head_commit(root, into)


def message(root: Path, rev: str) -> str:
    return git.run("show", "-s", "--format=%B", rev, cwd=root).stdout


# --- on a worker -------------------------------------------------------------------


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _has(repo: Path, sha: str) -> bool:
    return git.run("cat-file", "-e", f"{sha}^{{commit}}", cwd=repo, check=False).returncode == 0


def refresh_cache(cache: Path, url: str, shas: list[str]) -> None:
    """Make the per-host reference cache hold `shas`; fetch only when one is missing."""
    if cache.exists() and all(_has(cache, sha) for sha in shas):
        return
    with _flock(cache.with_name(cache.name + ".lock")):
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            git.run("init", "-q", "--bare", str(cache), cwd=cache.parent)
            git.run("config", "gc.auto", "0", cwd=cache)
        if all(_has(cache, sha) for sha in shas):
            return  # another lane on this host fetched them meanwhile
        git.run("fetch", "-q", "--no-tags", url, "+refs/heads/*:refs/heads/*",
                "+refs/orchestree/base/*:refs/orchestree/base/*", cwd=cache)  # fmt: skip


def clone(url: str, cache: Path, dest: Path) -> None:
    """Clone `url` into `dest`, borrowing from the per-host `cache`.

    `--no-local`: for a path, git's default copies (hard-links) the remote's objects
    folder file by file, while other lanes push there; a file that a push moves out
    of its quarantine (or an auto-gc prunes) between git's stat and its link ends the
    clone with "failed to copy file". Through the pack protocol the clone reads only
    objects the remote has published, and takes from the cache all it already holds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    git.run("clone", "-q", "--no-local", "--no-checkout", "--reference-if-able", str(cache),
            url, str(dest), cwd=dest.parent)  # fmt: skip


def _note_commit(repo: Path, text: str) -> str:
    """A commit on top of HEAD with HEAD's tree: a unique object to push as a marker."""
    return git.run("commit-tree", "HEAD^{tree}", "-p", "HEAD", "-F", "-", cwd=repo,
                   input=text).stdout.strip()  # fmt: skip


def claim(repo: Path, url: str, ref: str, note: str) -> bool:
    """Create `ref` on the remote only if nobody has: True when this run holds it.

    A push of a unique commit with `--force-with-lease=<ref>:` (the ref must not
    exist) is atomic on the remote: of two runs, exactly one wins."""
    sha = _note_commit(repo, note)
    proc = git.run("push", "-q", f"--force-with-lease={ref}:", url, f"{sha}:{ref}",
                   cwd=repo, check=False)  # fmt: skip
    if proc.returncode == 0:
        return True
    if any(sign in proc.stderr for sign in REJECTED):
        return False
    raise GitError(("git", "push", url, ref), proc.returncode, proc.stderr)


def push_lane(
    repo: Path, url: str, branch: str, expected: str | None, result_ref: str, result: str
) -> str | None:
    """Push the lane branch (leased on `expected`) and its result ref, atomically.

    Returns None on success, else why the remote refused."""
    marker = _note_commit(repo, result)
    branch_ref = f"refs/heads/{branch}"
    proc = git.run(
        "push", "-q", "--atomic",
        f"--force-with-lease={branch_ref}:{expected or ''}",
        f"--force-with-lease={result_ref}:",
        url, f"HEAD:{branch_ref}", f"{marker}:{result_ref}",
        cwd=repo, check=False,
    )  # fmt: skip
    if proc.returncode == 0:
        return None
    # git's last line only says "failed to push some refs"; the `! [rejected] … (stale
    # info)` line says which ref and why (the others of an atomic push say only that).
    lines = [" ".join(line.split()) for line in proc.stderr.splitlines() if line.strip()]
    rejected = sorted((ln for ln in lines if ln.startswith("! ")), key=lambda ln: "(atomic" in ln)
    return rejected[0] if rejected else (lines[-1] if lines else "push failed")
