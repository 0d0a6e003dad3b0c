"""remote.py: the shared git remote the Dask executor's workers clone from and push to,
against real bare repositories. The orchestrator publishes start commits and fetches
lane branches back; a worker keeps a reference cache, clones, claims its attempt with
an atomic ref, and pushes the lane branch with a lease."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from helpers import GIT_IDENTITY, make_repo
from helpers import git as sh
from orchestree import git
from orchestree.errors import EnvironmentRefused
from orchestree.executors import remote


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    return make_repo(tmp_path / "repo")


@pytest.fixture
def bare(root: Path, tmp_path: Path) -> Path:
    """A bare remote holding `main`, known to the repository as `origin`."""
    path = tmp_path / "remote.git"
    sh(tmp_path, "init", "-q", "--bare", "-b", "main", str(path))
    sh(root, "remote", "add", "origin", str(path))
    sh(root, "push", "-q", "origin", "main")
    return path


def commit(where: Path, name: str, text: str, message: str = "change") -> str:
    (where / name).write_text(text, encoding="utf-8")
    sh(where, "add", "-A")
    sh(where, "commit", "-q", "-m", message)
    return sh(where, "rev-parse", "HEAD")


def worker_clone(tmp_path: Path, url: str, name: str = "worker") -> Path:
    cache = tmp_path / f"{name}-cache.git"
    remote.refresh_cache(cache, url, [])
    dest = tmp_path / name / "clone"
    remote.clone(url, cache, dest)
    return dest


# --- the orchestrator's side -------------------------------------------------------------


def test_remote_url_resolves_a_remote_a_path_or_a_url(root: Path, bare: Path) -> None:
    assert remote.remote_url(root, "origin") == str(bare)
    assert remote.remote_url(root, "../remote.git") == str(bare)  # a path, from the root
    sh(root, "remote", "add", "rel", "../remote.git")
    assert remote.remote_url(root, "rel") == str(bare)
    assert remote.remote_url(root, "https://git.example.com/x.git") == (
        "https://git.example.com/x.git"
    )
    assert remote.remote_url(root, "git@host:team/x.git") == "git@host:team/x.git"


def test_remote_url_refuses_a_name_that_is_nothing_in_one_line(root: Path) -> None:
    with pytest.raises(EnvironmentRefused) as caught:
        remote.remote_url(root, "nowhere")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("[executor] remote = 'nowhere' is neither a git remote of ")
    assert "`git remote add nowhere <url>`" in message


def test_publish_puts_a_commit_on_the_remote_idempotently(root: Path, bare: Path) -> None:
    sha = commit(root, "start.txt", "s\n")
    remote.push_start(root, str(bare), sha)
    remote.push_start(root, str(bare), sha)  # again: no error, nothing new
    assert remote.heads(root, str(bare), "refs/orchestree/base/*") == {
        f"refs/orchestree/base/{sha}": sha
    }
    assert sh(bare, "cat-file", "-t", sha) == "commit"


def test_publish_to_a_remote_that_refuses_is_one_line_naming_it(root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.git"
    with pytest.raises(EnvironmentRefused) as caught:
        remote.push_start(root, str(missing), sh(root, "rev-parse", "HEAD"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot push to the executor's remote {missing} (")
    assert message.endswith(
        "check [executor] remote in orchestree.toml and that this machine can push there"
    )


def test_heads_lists_the_remotes_refs_matching_a_pattern(root: Path, bare: Path) -> None:
    main = sh(root, "rev-parse", "HEAD")
    sh(root, "push", "-q", "origin", "main:refs/heads/lane-a", "main:refs/heads/other")
    assert remote.heads(root, str(bare), "refs/heads/lane-*") == {"refs/heads/lane-a": main}
    assert remote.heads(root, str(bare), "refs/heads/none-*") == {}


def test_fetch_ref_brings_a_branch_back_or_says_none(
    root: Path, bare: Path, tmp_path: Path
) -> None:
    clone = worker_clone(tmp_path, str(bare))
    sh(clone, "checkout", "-q", "-b", "lane-a", "origin/main")
    head = commit(clone, "work.txt", "w\n", "the lane's work\n\nTasks: x")
    sh(clone, "push", "-q", "origin", "lane-a")
    got = remote.fetch_ref(root, str(bare), "refs/heads/lane-a")
    assert got == head
    assert git.head_commit(root, "lane-a") == head
    into = remote.fetch_ref(root, str(bare), "refs/heads/lane-a", "refs/orchestree/fetched/a")
    assert into == head
    assert git.head_commit(root, "refs/orchestree/fetched/a") == head
    assert remote.fetch_ref(root, str(bare), "refs/heads/lane-none") is None
    assert remote.message(root, head) == "the lane's work\n\nTasks: x\n\n"


# --- a worker's side -----------------------------------------------------------------------


def test_refresh_cache_fetches_only_when_a_commit_is_missing(
    root: Path, bare: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.git"
    first = sh(root, "rev-parse", "HEAD")
    remote.refresh_cache(cache, str(bare), [first])
    assert sh(cache, "rev-parse", "--is-bare-repository") == "true"
    assert sh(cache, "config", "gc.auto") == "0"
    assert sh(cache, "cat-file", "-t", first) == "commit"
    # Everything asked for is there: the remote is not contacted (here: it is gone).
    moved = tmp_path / "moved.git"
    bare.rename(moved)
    remote.refresh_cache(cache, str(bare), [first])
    bare_back = moved.rename(bare)
    second = commit(root, "next.txt", "n\n")
    remote.push_start(root, str(bare_back), second)
    remote.refresh_cache(cache, str(bare), [first, second])
    assert sh(cache, "cat-file", "-t", second) == "commit"


def test_clone_borrows_objects_from_the_cache_and_checks_nothing_out(
    root: Path, bare: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.git"
    remote.refresh_cache(cache, str(bare), [sh(root, "rev-parse", "HEAD")])
    dest = tmp_path / "w" / "clone"
    remote.clone(str(bare), cache, dest)
    alternates = (dest / ".git" / "objects" / "info" / "alternates").read_text(encoding="utf-8")
    assert alternates.strip() == str(cache / "objects")
    assert sorted(p.name for p in dest.iterdir()) == [".git"]
    assert sh(dest, "rev-parse", "HEAD") == sh(root, "rev-parse", "HEAD")


def test_clone_never_copies_the_remotes_objects_folder(
    root: Path, bare: Path, tmp_path: Path
) -> None:
    """Another lane's push in progress leaves a quarantine folder in the remote's
    objects, whose files move away at any moment. Here one holds an entry that is
    gone (a dangling link): a clone that walks the folder fails on it, as it fails
    on a file moved between its stat and its link; one through the protocol does not."""
    cache = tmp_path / "cache.git"
    head = sh(root, "rev-parse", "HEAD")
    remote.refresh_cache(cache, str(bare), [head])
    pushing = bare / "objects" / "tmp_objdir-incoming-x" / "ab"
    pushing.mkdir(parents=True)
    (pushing / "cdef").symlink_to(tmp_path / "moved-away")
    dest = tmp_path / "w" / "clone"
    remote.clone(str(bare), cache, dest)
    assert sh(dest, "rev-parse", "HEAD") == head
    assert not (dest / ".git" / "objects" / "tmp_objdir-incoming-x").exists()
    # Every object came from the cache: none was copied or linked from the remote.
    assert [p for p in (dest / ".git" / "objects").rglob("*") if p.is_file()] == [
        dest / ".git" / "objects" / "info" / "alternates"
    ]


def test_claim_is_won_by_exactly_one_run(root: Path, bare: Path, tmp_path: Path) -> None:
    clones = [worker_clone(tmp_path, str(bare), f"w{i}") for i in range(4)]
    ref = "refs/orchestree/claims/lane-a/1"
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda c=c: results.append(remote.claim(c, str(bare), ref, f"by {c}"))
        )
        for c in clones
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False, False, False, True]
    winner = remote.heads(root, str(bare), ref)[ref]
    assert sh(clones[0], "fetch", "-q", "origin", ref) == ""
    assert sh(clones[0], "log", "-1", "--format=%s", "FETCH_HEAD").startswith("by ")
    assert remote.claim(clones[0], str(bare), ref, "late") is False
    assert remote.heads(root, str(bare), ref)[ref] == winner  # never moved


def test_push_lane_pushes_branch_and_result_together_under_a_lease(
    root: Path, bare: Path, tmp_path: Path
) -> None:
    clone = worker_clone(tmp_path, str(bare))
    sh(clone, "checkout", "-q", "-b", "lane-a", "origin/main")
    first = commit(clone, "a.txt", "1\n")
    result1 = "refs/orchestree/results/lane-a/1"
    assert remote.push_lane(clone, str(bare), "lane-a", None, result1, '{"ok": true}') is None
    assert remote.heads(root, str(bare), "refs/heads/lane-a") == {"refs/heads/lane-a": first}
    assert result1 in remote.heads(root, str(bare), "refs/orchestree/results/*")
    # A retry that expects a head the remote no longer has is refused, and nothing moves.
    second = commit(clone, "a.txt", "2\n")
    result2 = "refs/orchestree/results/lane-a/2"
    refused = remote.push_lane(clone, str(bare), "lane-a", "0" * 40, result2, "{}")
    assert refused == "! [rejected] HEAD -> lane-a (stale info)"  # which ref and why
    assert remote.heads(root, str(bare), "refs/heads/lane-a") == {"refs/heads/lane-a": first}
    assert result2 not in remote.heads(root, str(bare), "refs/orchestree/results/*")
    # With the right lease it goes; a result ref that exists is never overwritten.
    again = remote.push_lane(clone, str(bare), "lane-a", first, result1, "{}")
    assert again is not None
    assert again.startswith("! [rejected]")
    assert result1.removeprefix("refs/") in again  # the ref that exists, not the branch
    assert remote.push_lane(clone, str(bare), "lane-a", first, result2, "{}") is None
    assert remote.heads(root, str(bare), "refs/heads/lane-a") == {"refs/heads/lane-a": second}
