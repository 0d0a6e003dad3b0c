"""git.py: every helper against a real repository in tmp_path; no git is mocked.

The promises tested are the module's own: an inherited `GIT_*` variable cannot point
orchestree's git at another repository, a failing command raises `GitError` with one
useful line, worktree administration is serialised by one lock that a second process
can hold (and that a SIGKILLed holder does not leave stuck), and each helper answers
its question on a real repository, failures included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from helpers import GIT_IDENTITY, holding, make_repo
from helpers import git as sh
from orchestree import git
from orchestree.errors import EnvironmentRefused, GitError

# Holds `git.admin_lock(root)` until its stdin closes; says "held" once it has it.
HOLDER = (
    "import sys; from pathlib import Path; from orchestree import git\n"
    "with git.admin_lock(Path(sys.argv[1])):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.readline()\n"
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository on `main` (README.md, src/app.py); git sees a fixed identity and
    no user or system config, and no inherited variable points it elsewhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    return make_repo(tmp_path / "repo")


def write(where: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = where / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def commit(where: Path, files: Mapping[str, str], message: str = "change") -> str:
    """Write `files`, commit everything (test side, plain git); the new head."""
    write(where, files)
    sh(where, "add", "-A")
    sh(where, "commit", "-q", "-m", message)
    return sh(where, "rev-parse", "HEAD")


def linked(root: Path, name: str, start: str = "main") -> Path:
    """A worktree `<root>-<name>` on a new branch `name`, made by orchestree."""
    path = root.parent / f"{root.name}-{name}"
    git.worktree_add(root, path, name, sh(root, "rev-parse", start))
    return path


def admin_of(root: Path, path: Path) -> Path:
    return Path(sh(path, "rev-parse", "--absolute-git-dir"))


@pytest.fixture
def holder(root: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holding the admin lock of `root`, until its stdin closes."""
    with holding(HOLDER, str(root)) as proc:
        yield proc


def in_thread(call: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


# --- The environment: nothing inherited redirects orchestree's git ------------------


def test_inherited_git_variables_cannot_point_orchestree_at_another_repository(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_repo(tmp_path / "other")
    commit(other, {"other.txt": "other\n"})
    ours = sh(root, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "no-index"))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(tmp_path / "no-objects"))
    monkeypatch.setenv("GIT_PREFIX", "src/")
    assert git.head_commit(root) == ours
    assert git.ls_files(root) == ["README.md", "src/app.py"]
    assert git.dirty_files(root) == []
    assert not {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX"} & set(git.git_env())


def test_every_git_runs_without_auto_gc_and_a_callers_env_is_honoured(
    root: Path, tmp_path: Path
) -> None:
    assert git.out("config", "gc.auto", cwd=root) == "0"
    assert git.out("config", "maintenance.auto", cwd=root) == "false"
    assert git.git_env({"SOMETHING": "1"})["SOMETHING"] == "1"
    # What the caller passes on purpose (a worktree's admin folder) is used.
    other = make_repo(tmp_path / "other")
    said = git.run("rev-parse", "--git-dir", cwd=root, env={"GIT_DIR": str(other / ".git")})
    assert Path(said.stdout.strip()) == other / ".git"


def test_config_env_sets_configuration_for_the_git_that_inherits_it(root: Path) -> None:
    pairs = (("user.name", "Zed"), ("orchestree.probe", "yes"))
    env = git.config_env(pairs)
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert git.run("config", "orchestree.probe", cwd=root, env=env).stdout.strip() == "yes"
    assert git.run("config", "user.name", cwd=root, env=env).stdout.strip() == "Zed"


# --- Errors: one useful line -----------------------------------------------------------


def test_a_failing_command_raises_git_error_naming_command_code_and_gits_verdict(
    root: Path,
) -> None:
    with pytest.raises(GitError) as caught:
        git.run("rev-parse", "--verify", "no-such-branch", cwd=root)
    error = caught.value
    assert error.code == 128
    assert error.exit_code == 3
    message = str(error)
    assert "\n" not in message
    assert message.startswith("`git rev-parse --verify no-such-branch` failed with exit code 128")
    assert "fatal: Needed a single revision" in message
    unchecked = git.run("rev-parse", "--verify", "no-such-branch", cwd=root, check=False)
    assert unchecked.returncode == 128  # check=False hands the failure back instead


def test_a_held_index_lock_fails_a_commit_with_the_lock_named_in_one_line(root: Path) -> None:
    lane = linked(root, "lane-a")
    lock = git.git_path(lane, "index.lock")
    assert lock.parent == git.common_dir(root) / "worktrees" / lane.name
    lock.write_text("", encoding="utf-8")
    write(lane, {"new.txt": "new\n"})
    with pytest.raises(GitError) as caught:
        git.commit_all(lane, "work")
    message = str(caught.value)
    assert "\n" not in message
    assert "index.lock': File exists" in message
    assert "Another git process" not in message  # git's advice lines are left out
    lock.unlink()
    assert git.commit_all(lane, "work") is not None


# --- Where things are -----------------------------------------------------------------


def test_repo_root_finds_the_top_from_inside_and_refuses_outside(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert git.repo_root(root / "src") == root
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(EnvironmentRefused, match="is not inside a git repository; run"):
        git.repo_root(plain)
    with pytest.raises(EnvironmentRefused, match="does not exist; pass an existing"):
        git.repo_root(tmp_path / "missing")


def test_common_dir_is_the_shared_git_folder_from_any_worktree(root: Path) -> None:
    lane = linked(root, "lane-a")
    assert git.common_dir(root) == root / ".git"
    assert git.common_dir(lane) == root / ".git"


def test_head_commit_and_current_branch(root: Path) -> None:
    head = sh(root, "rev-parse", "HEAD")
    assert git.head_commit(root) == head
    assert git.head_commit(root, "main") == head
    assert git.head_commit(root, "no-such") is None
    assert git.head_commit(root, "HEAD:README.md") is None  # a blob is not a commit
    assert git.current_branch(root) == "main"
    sh(root, "checkout", "-q", "--detach")
    assert git.current_branch(root) is None


def test_head_commit_of_a_repository_without_commits_is_none(tmp_path: Path, root: Path) -> None:
    empty = make_repo(tmp_path / "empty", commit=False)
    assert git.head_commit(empty) is None
    assert git.current_branch(empty) == "main"


def test_add_excludes_adds_each_pattern_once_to_the_shared_exclude(root: Path) -> None:
    lane = linked(root, "lane-a")
    assert git.add_excludes(root, ["/.orchestration", "*.tmp"]) == ["/.orchestration", "*.tmp"]
    assert git.add_excludes(lane, ["*.tmp", "/scratch"]) == ["/scratch"]
    text = (root / ".git" / "info" / "exclude").read_text(encoding="utf-8")
    assert text.count("# orchestree") == 1
    assert text.count("*.tmp") == 1
    write(lane, {"x.tmp": "x\n", "kept.txt": "k\n"})
    assert git.ls_files(lane) == ["README.md", "kept.txt", "src/app.py"]


def test_identity_is_the_repositorys_else_orchestrees_own(root: Path) -> None:
    assert git.identity(root) == git.FALLBACK_IDENTITY
    sh(root, "config", "user.name", "Ada")
    sh(root, "config", "user.email", "ada@example.com")
    assert git.identity(root) == ("Ada", "ada@example.com")


def test_ls_files_lists_tracked_and_unignored_untracked_files_with_odd_names(
    root: Path,
) -> None:
    write(root, {".gitignore": "*.log\n", "a b.txt": "x\n", "line\nbreak.txt": "y\n"})
    write(root, {"debug.log": "ignored\n"})
    assert git.ls_files(root) == [
        ".gitignore", "README.md", "a b.txt", "line\nbreak.txt", "src/app.py",
    ]  # fmt: skip


# --- Worktrees, branches and the admin lock -------------------------------------------


def test_worktree_add_makes_a_populated_worktree_on_a_new_branch(root: Path) -> None:
    start = sh(root, "rev-parse", "HEAD")
    lane = linked(root, "lane-a")
    assert (lane / "src" / "app.py").read_text(encoding="utf-8") == "print('hi')\n"
    assert git.current_branch(lane) == "lane-a"
    assert git.branch_exists(root, "lane-a")
    assert git.dirty_files(lane) == []
    listed = {tree.path: tree for tree in git.worktree_list(root)}
    assert listed[lane] == git.Worktree(lane, start, "lane-a", prunable=False)
    assert listed[root].branch == "main"


def test_worktree_add_without_populating_leaves_the_files_to_the_caller(root: Path) -> None:
    path = root.parent / "unpopulated"
    git.worktree_add(root, path, "lane-b", sh(root, "rev-parse", "HEAD"), populate=False)
    assert not (path / "README.md").exists()
    assert git.branch_exists(root, "lane-b")


def test_worktree_add_onto_an_existing_branch_is_refused_and_the_branch_kept(root: Path) -> None:
    first = commit(root, {"one.txt": "1\n"})
    sh(root, "branch", "lane-a")
    with pytest.raises(GitError, match="already exists"):
        git.worktree_add(root, root.parent / "lane-a", "lane-a", sh(root, "rev-parse", "HEAD~1"))
    assert git.head_commit(root, "lane-a") == first
    assert not (root.parent / "lane-a").exists()


def test_worktree_add_keeps_refusing_what_its_force_flag_does_not_waive(root: Path) -> None:
    # `--force` (it spares git two reads of every worktree) still refuses a folder that
    # is not empty, a branch that exists, and a deleted worktree's locked registration.
    start = sh(root, "rev-parse", "HEAD")
    busy = root.parent / "busy"
    write(busy, {"mine.txt": "the user's\n"})
    with pytest.raises(GitError, match="already exists"):
        git.worktree_add(root, busy, "lane-busy", start)
    assert (busy / "mine.txt").read_text(encoding="utf-8") == "the user's\n"
    taken = linked(root, "lane-taken")
    with pytest.raises(GitError, match="already exists"):
        git.worktree_add(root, root.parent / "elsewhere", "lane-taken", start)
    assert git.current_branch(taken) == "lane-taken"
    locked = linked(root, "lane-locked")
    sh(root, "worktree", "lock", str(locked))
    sh(root, "worktree", "remove", "--force", "--force", str(locked))
    sh(root, "worktree", "add", "--lock", "-b", "lane-held", str(locked), start)
    shutil.rmtree(locked)
    with pytest.raises(GitError, match="locked"):
        git.worktree_add(root, locked, "lane-again", start)
    held = {t.path: t for t in git.worktree_list(root)}[locked]
    assert (held.branch, held.locked) == ("lane-held", True)  # its record is kept


def test_worktree_add_at_the_path_of_a_deleted_worktree_drops_its_stale_record(
    root: Path,
) -> None:
    # Someone deleted a lane's folder without `git worktree prune`: the lane that
    # comes to that path next starts there, as it would after a prune.
    gone = linked(root, "lane-old")
    shutil.rmtree(gone)
    git.worktree_add(root, gone, "lane-new", sh(root, "rev-parse", "HEAD"))
    assert git.current_branch(gone) == "lane-new"
    assert git.branch_exists(root, "lane-old")  # the branch and its commits stay
    assert [t.path for t in git.worktree_list(root)] == [root, gone]


def test_a_worktree_add_that_keeps_failing_on_a_lock_leaves_nothing_behind(root: Path) -> None:
    # A ref lock another git holds is a transient failure: retried, each try undone.
    (root / ".git" / "refs" / "heads" / "lane-a.lock").write_text("", encoding="utf-8")
    path = root.parent / "lane-a"
    with pytest.raises(GitError, match=r"lane-a\.lock': File exists"):
        git.worktree_add(root, path, "lane-a", sh(root, "rev-parse", "HEAD"))
    assert not git.branch_exists(root, "lane-a")
    assert [tree.path for tree in git.worktree_list(root)] == [root]
    assert not path.exists()


def test_worktree_administration_waits_while_another_process_holds_the_admin_lock(
    root: Path, holder: subprocess.Popen[str]
) -> None:
    assert (root / ".git" / "orchestree-admin.lock").exists()
    path = root.parent / "lane-a"
    worker = in_thread(lambda: git.worktree_add(root, path, "lane-a", "main"))
    worker.join(1.0)
    assert worker.is_alive(), "worktree_add did not wait for the admin lock"
    assert not git.branch_exists(root, "lane-a")
    assert holder.stdin is not None
    holder.stdin.close()  # the holder lets go
    worker.join(30)
    assert not worker.is_alive()
    assert git.current_branch(path) == "lane-a"


def test_a_sigkilled_holder_of_the_admin_lock_leaves_it_free(
    root: Path, holder: subprocess.Popen[str]
) -> None:
    sh(root, "branch", "main-copy")
    worker = in_thread(lambda: git.branch_delete(root, "main-copy", force=True))
    worker.join(0.5)
    assert worker.is_alive()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    worker.join(30)
    assert not worker.is_alive()
    assert not git.branch_exists(root, "main-copy")


def test_admin_lock_is_exclusive_within_one_process_too(root: Path) -> None:
    order: list[str] = []
    with git.admin_lock(root):
        worker = in_thread(lambda: (git.worktree_prune(root), order.append("prune")))
        worker.join(0.5)
        order.append("released")
    worker.join(30)
    assert order == ["released", "prune"]


def test_worktree_remove_refuses_a_dirty_worktree_unless_forced(root: Path) -> None:
    clean, dirty = linked(root, "clean"), linked(root, "dirty")
    git.worktree_remove(root, clean)
    assert not clean.exists()
    write(dirty, {"README.md": "changed\n"})
    with pytest.raises(GitError, match="contains modified or untracked files"):
        git.worktree_remove(root, dirty)
    assert (dirty / "README.md").read_text(encoding="utf-8") == "changed\n"
    git.worktree_remove(root, dirty, force=True)
    assert not dirty.exists()
    assert [tree.path for tree in git.worktree_list(root)] == [root]
    assert git.branch_exists(root, "dirty")  # the branch outlives its worktree


def test_worktree_prune_drops_worktrees_whose_folder_is_gone(root: Path) -> None:
    lane = linked(root, "lane-a")
    sh(root, "worktree", "lock", str(lane))
    assert {t.path: t.locked for t in git.worktree_list(root)}[lane] is True
    sh(root, "worktree", "unlock", str(lane))
    subprocess.run(["rm", "-rf", str(lane)], check=True)
    assert {t.path: t.prunable for t in git.worktree_list(root)}[lane] is True
    git.worktree_prune(root)
    assert [tree.path for tree in git.worktree_list(root)] == [root]


def test_worktree_forget_drops_only_the_admin_folders_named(root: Path) -> None:
    ours, users = linked(root, "ours"), linked(root, "users")
    admin = admin_of(root, ours)
    for path in (ours, users):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    with pytest.raises(GitError, match="not a worktree admin folder"):
        git.worktree_forget(root, [root / ".git" / "refs"])
    assert (root / ".git" / "refs").is_dir()
    git.worktree_forget(root, [admin])
    assert not admin.exists()
    assert [tree.path for tree in git.worktree_list(root)] == [root, users]


def test_delete_refs_deletes_all_or_none(root: Path) -> None:
    head = sh(root, "rev-parse", "HEAD")
    later = commit(root, {"later.txt": "x\n"})
    git.set_ref(root, "refs/orchestree/a", head)
    git.set_ref(root, "refs/orchestree/b", later)
    with pytest.raises(GitError):  # b is not at `head` any more: nothing is deleted
        git.delete_refs(root, {"refs/orchestree/a": head, "refs/orchestree/b": head})
    assert git.ref_heads(root, "refs/orchestree/") == {"orchestree/a": head, "orchestree/b": later}
    git.delete_refs(root, {"refs/orchestree/a": head, "refs/orchestree/b": later})
    assert git.ref_heads(root, "refs/orchestree/") == {}
    git.delete_refs(root, {})  # nothing to do, no git run


def test_branch_delete_refuses_an_unmerged_branch_unless_forced(root: Path) -> None:
    sh(root, "checkout", "-q", "-b", "lane-a")
    commit(root, {"work.txt": "work\n"})
    sh(root, "checkout", "-q", "main")
    with pytest.raises(GitError, match="not fully merged"):
        git.branch_delete(root, "lane-a")
    assert git.branch_exists(root, "lane-a")
    git.branch_delete(root, "lane-a", force=True)
    assert not git.branch_exists(root, "lane-a")


# --- Commits, ancestry, files ----------------------------------------------------------


def test_is_ancestor_and_merge_base(root: Path) -> None:
    base = sh(root, "rev-parse", "HEAD")
    later = commit(root, {"later.txt": "x\n"})
    assert git.is_ancestor(root, base, later)
    assert not git.is_ancestor(root, later, base)
    assert git.merge_base(root, base, later) == base
    sh(root, "checkout", "-q", "--orphan", "unrelated")
    alone = commit(root, {"alone.txt": "a\n"})
    assert git.merge_base(root, alone, later) is None


def test_file_at_reads_a_file_of_a_commit(root: Path) -> None:
    head = sh(root, "rev-parse", "HEAD")
    write(root, {"README.md": "changed, not committed\n"})
    assert git.file_at(root, head, "README.md") == "# demo\n"
    assert git.file_at(root, head, "missing.txt") is None


def test_dirty_files_lists_changes_renames_and_untracked_files(root: Path) -> None:
    commit(root, {"old name.txt": "text\n", "gone.txt": "x\n"})
    write(root, {"README.md": "changed\n", "new file.txt": "n\n"})
    (root / "gone.txt").unlink()
    sh(root, "mv", "old name.txt", "renamed.txt")
    assert git.dirty_files(root) == ["README.md", "gone.txt", "renamed.txt", "new file.txt"]
    assert git.dirty_files(root, untracked=False) == ["README.md", "gone.txt", "renamed.txt"]


def test_commit_all_commits_everything_or_returns_none(root: Path) -> None:
    assert git.commit_all(root, "nothing") is None
    write(root, {"new.txt": "n\n", "README.md": "changed\n", ".gitignore": "*.log\n"})
    write(root, {"debug.log": "ignored\n"})
    sha = git.commit_all(root, "the work")
    assert sha == sh(root, "rev-parse", "HEAD")
    assert sh(root, "log", "-1", "--format=%s") == "the work"
    assert git.changed_files(root, "HEAD~1", "HEAD") == [".gitignore", "README.md", "new.txt"]
    assert git.dirty_files(root) == []  # debug.log is ignored


def test_commit_all_leaves_out_orchestrees_files_and_untouched_setup_output(root: Path) -> None:
    write(root, {"access_tracker.py": "ours\n", "made.txt": "setup made\n"})
    write(root, {"touched.txt": "setup made\n", "work.txt": "agent\n"})
    setup = git.hash_files(root, ["made.txt", "touched.txt"])
    write(root, {"touched.txt": "the agent changed it\n"})
    sh(root, "add", "access_tracker.py")  # staged by the agent: still left out
    sha = git.commit_all(
        root, "work", keep_out=["access_tracker.py"], setup_made={**setup, "deleted.txt": ""}
    )
    assert sha is not None
    assert sorted(git.changed_files(root, "HEAD~1", sha)) == ["touched.txt", "work.txt"]
    assert sorted(git.dirty_files(root)) == ["access_tracker.py", "made.txt"]


def test_commit_all_through_the_admin_folder_ignores_a_rewritten_git_link(
    root: Path, tmp_path: Path
) -> None:
    lane = linked(root, "lane-a")
    admin = admin_of(root, lane)
    decoy = make_repo(tmp_path / "decoy")
    decoy_head = sh(decoy, "rev-parse", "HEAD")
    (lane / ".git").write_text(f"gitdir: {decoy / '.git'}\n", encoding="utf-8")
    write(lane, {"work.txt": "w\n"})
    sha = git.commit_all(lane, "work", env=git.worktree_env(admin, lane))
    assert sha is not None
    assert git.head_commit(root, "lane-a") == sha
    assert sh(decoy, "rev-parse", "HEAD") == decoy_head


def test_keep_attempt_head_never_moves_a_kept_head(root: Path) -> None:
    first = sh(root, "rev-parse", "HEAD")
    second = commit(root, {"two.txt": "2\n"})
    ref = git.keep_attempt_head(root, "lane-a", 1, first)
    assert ref == "refs/orchestree/attempts/lane-a/1"
    assert git.keep_attempt_head(root, "lane-a", 1, first) == ref  # the same: no new ref
    other = git.keep_attempt_head(root, "lane-a", 1, second)
    assert other == "refs/orchestree/attempts/lane-a/1-2"
    assert git.head_commit(root, ref) == first
    assert git.head_commit(root, other) == second
    assert git.keep_attempt_head(root, "lane-a", 2, second) == "refs/orchestree/attempts/lane-a/2"


def test_revs_holding_asks_for_many_commits_at_once(root: Path) -> None:
    plain = sh(root, "rev-parse", "HEAD")
    holds = commit(root, {".orchestration/tracker.json": "{}\n", "docs/x.md": "x\n"})
    nested = commit(root, {"build/wt/agent/f.txt": "f\n"})
    own = [".orchestration", "build/wt", "access_tracker.py"]
    assert git.revs_holding(root, [plain, holds, nested, plain], own) == {holds, nested}
    assert git.revs_holding(root, [plain], own) == set()
    assert git.revs_holding(root, [holds], ["docs/x.md", "*"]) == {holds}  # a file, literally
    assert git.revs_holding(root, [], own) == git.revs_holding(root, [holds], []) == set()


def test_tracked_under_and_is_tracked_take_paths_literally(root: Path) -> None:
    head = commit(root, {"*.py": "a star\n", "b.py": "b\n", "docs/x.md": "x\n"})
    assert git.tracked_under(root, head, ["*.py"]) == ["*.py"]
    assert git.tracked_under(root, head, ["docs", "src"]) == ["docs/x.md", "src/app.py"]
    assert git.tracked_under(root, head, []) == []
    assert git.is_tracked(root, "*.py")
    assert git.is_tracked(root, "docs")
    assert not git.is_tracked(root, "*.md")
    write(root, {"untracked.txt": "u\n"})
    assert not git.is_tracked(root, "untracked.txt")
    assert git.literal("ls-files", "--", "*.py", cwd=root).stdout == "*.py\n"
    assert git.run("ls-files", "--", "*.py", cwd=root).stdout == "*.py\nb.py\nsrc/app.py\n"


def test_changed_files_and_added_files_see_renames_as_delete_plus_add(root: Path) -> None:
    old = commit(root, {"keep.txt": "k\n", "edit.txt": "1\n", "drop.txt": "d\n"})
    sh(root, "mv", "keep.txt", "moved.txt")
    new = commit(root, {"edit.txt": "2\n", "added.txt": "a\n"})
    (root / "drop.txt").unlink()
    new = commit(root, {})
    assert git.changed_files(root, old, new) == [
        "added.txt", "drop.txt", "edit.txt", "keep.txt", "moved.txt",
    ]  # fmt: skip
    assert git.added_files(root, old, new) == ["added.txt", "moved.txt"]
    assert git.changed_files(root, new, new) == []


# --- In-memory merges and refs -----------------------------------------------------------


def test_merge_tree_merges_in_memory_and_commit_tree_records_it(root: Path) -> None:
    base = sh(root, "rev-parse", "HEAD")
    sh(root, "checkout", "-q", "-b", "lane-a")
    a = commit(root, {"a.txt": "a\n"})
    sh(root, "checkout", "-q", "-b", "lane-b", base)
    b = commit(root, {"b.txt": "b\n"})
    refs_before, status_before = git.all_refs(root), git.dirty_files(root)
    merged = git.merge_tree(root, a, b)
    assert merged.tree is not None
    assert merged.conflicts == []
    assert git.all_refs(root) == refs_before
    assert git.dirty_files(root) == status_before
    made = git.commit_tree(root, merged.tree, [a, b], "merge a and b\n")
    assert sh(root, "rev-list", "--parents", "-n1", made).split() == [made, a, b]
    assert git.file_at(root, made, "a.txt") == "a\n"
    assert git.file_at(root, made, "b.txt") == "b\n"


def test_merge_tree_names_the_conflicted_files(root: Path) -> None:
    base = sh(root, "rev-parse", "HEAD")
    sh(root, "checkout", "-q", "-b", "lane-a")
    a = commit(root, {"README.md": "a\n", "only-a.txt": "a\n"})
    sh(root, "checkout", "-q", "-b", "lane-b", base)
    b = commit(root, {"README.md": "b\n", "src/app.py": "print('b')\n"})
    assert git.merge_tree(root, a, b) == git.TreeMerge(None, ["README.md"])
    with pytest.raises(GitError, match="not something we can merge"):
        git.merge_tree(root, a, "no-such-commit")  # not a conflict without files


def test_update_ref_is_a_compare_and_swap(root: Path) -> None:
    first = sh(root, "rev-parse", "HEAD")
    second = commit(root, {"2.txt": "2\n"})
    assert git.update_ref(root, "refs/orchestree/x", first, "")  # "": must not exist yet
    assert not git.update_ref(root, "refs/orchestree/x", second, "")
    assert not git.update_ref(root, "refs/orchestree/x", second, second)  # stale `old`
    assert git.head_commit(root, "refs/orchestree/x") == first
    assert git.update_ref(root, "refs/orchestree/x", second, first)
    assert git.head_commit(root, "refs/orchestree/x") == second


def test_set_ref_delete_ref_ref_heads_and_all_refs(root: Path) -> None:
    head = sh(root, "rev-parse", "HEAD")
    git.set_ref(root, "refs/orchestree/base/one", head)
    sh(root, "pack-refs", "--all")  # packed refs are listed as well as loose ones
    git.set_ref(root, "refs/orchestree/base/two", head)
    assert git.ref_heads(root, "refs/orchestree/base/") == {
        "orchestree/base/one": head, "orchestree/base/two": head,
    }  # fmt: skip
    assert git.all_refs(root) == {
        "refs/heads/main": head,
        "refs/orchestree/base/one": head,
        "refs/orchestree/base/two": head,
    }
    git.delete_ref(root, "refs/orchestree/base/one")
    git.delete_ref(root, "refs/orchestree/base/never-there")  # no error
    assert set(git.all_refs(root)) == {"refs/heads/main", "refs/orchestree/base/two"}
    with pytest.raises(GitError):
        git.set_ref(root, "refs/orchestree/bad", "no-such-commit")


def test_refs_merged_into_and_merges_by_second_parent(root: Path) -> None:
    base = sh(root, "rev-parse", "HEAD")
    sh(root, "checkout", "-q", "-b", "lane-a")
    a = commit(root, {"a.txt": "a\n"})
    sh(root, "checkout", "-q", "-b", "lane-b", base)
    commit(root, {"b.txt": "b\n"})
    sh(root, "checkout", "-q", "main")
    sh(root, "merge", "-q", "--no-ff", "-m", "merge a", "lane-a")
    merge = sh(root, "rev-parse", "HEAD")
    assert git.refs_merged_into(root, "main", "refs/heads/lane-*") == {"lane-a"}
    assert git.merges_by_second_parent(root, "main", base) == {a: merge}
    assert git.merges_by_second_parent(root, "main", merge) == {}


# --- Worktree contents -------------------------------------------------------------------


def test_worktree_add_detached_and_checkout_clean(root: Path) -> None:
    first = sh(root, "rev-parse", "HEAD")
    second = commit(root, {"second.txt": "2\n", ".gitignore": "*.log\n"})
    scratch = root.parent / "scratch"
    git.worktree_add_detached(root, scratch, first)
    assert git.current_branch(scratch) is None
    assert git.head_commit(scratch) == first
    assert {t.path: t.branch for t in git.worktree_list(root)}[scratch] is None
    git.checkout_clean(scratch, second)
    assert (scratch / "second.txt").exists()
    write(scratch, {"README.md": "dirty\n", "stray.txt": "s\n", "build.log": "ignored\n"})
    git.checkout_clean(scratch, first)
    assert git.head_commit(scratch) == first
    assert sorted(p.name for p in scratch.iterdir()) == [".git", "README.md", "src"]
    assert (scratch / "README.md").read_text(encoding="utf-8") == "# demo\n"


def test_merge_ff_only_moves_forward_and_refuses_to_diverge(root: Path) -> None:
    base = sh(root, "rev-parse", "HEAD")
    sh(root, "checkout", "-q", "-b", "lane-a")
    ahead = commit(root, {"ahead.txt": "a\n"})
    sh(root, "checkout", "-q", "main")
    assert git.merge_ff_only(root, ahead).returncode == 0
    assert git.head_commit(root) == ahead
    assert (root / "ahead.txt").exists()
    sh(root, "checkout", "-q", "-b", "side", base)
    side = commit(root, {"side.txt": "s\n"})
    refused = git.merge_ff_only(root, ahead)
    assert refused.returncode != 0
    assert git.head_commit(root) == side
    assert not (root / "ahead.txt").exists()


def test_blob_ids_and_hash_files_agree_on_unchanged_files(root: Path) -> None:
    head = sh(root, "rev-parse", "HEAD")
    write(root, {"src/app.py": "print('changed')\n"})
    (root / "link").symlink_to("README.md")
    in_commit = git.blob_ids(root, head, ["README.md", "src/app.py", "absent.txt"])
    on_disk = git.hash_files(root, ["README.md", "src/app.py", "absent.txt", "link"])
    assert set(in_commit) == {"README.md", "src/app.py"}
    assert set(on_disk) == {"README.md", "src/app.py", "link"}
    assert on_disk["README.md"] == in_commit["README.md"]
    assert on_disk["src/app.py"] != in_commit["src/app.py"]
    assert git.blob_ids(root, head, []) == {}
    assert git.hash_files(root, ["absent.txt"]) == {}


def test_reset_index_keeps_files_and_restore_files_writes_the_index_version(root: Path) -> None:
    write(root, {"README.md": "staged\n"})
    sh(root, "add", "README.md")
    git.reset_index(root)
    assert sh(root, "diff", "--cached", "--name-only") == ""
    assert (root / "README.md").read_text(encoding="utf-8") == "staged\n"
    git.restore_files(root, ["README.md"])
    assert (root / "README.md").read_text(encoding="utf-8") == "# demo\n"
    git.restore_files(root, [])  # nothing to do
    with pytest.raises(GitError):
        git.restore_files(root, ["not-in-index.txt"])


def test_export_tree_writes_a_commits_files_and_registers_nothing(
    root: Path, tmp_path: Path
) -> None:
    head = commit(root, {"docs/guide.md": "guide\n"})
    write(root, {"README.md": "uncommitted\n"})
    dest = tmp_path / "export"
    git.export_tree(root, head, dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "README.md", "docs/guide.md", "src/app.py",
    ]  # fmt: skip
    assert (dest / "README.md").read_text(encoding="utf-8") == "# demo\n"
    assert not (tmp_path / "export.tar").exists()
    assert [t.path for t in git.worktree_list(root)] == [root]
    with pytest.raises(FileExistsError):
        git.export_tree(root, head, dest)


# --- Searching ---------------------------------------------------------------------------


def test_grep_lines_searches_text_files_whatever_the_users_grep_config(root: Path) -> None:
    for key, value in (("color.grep", "always"), ("grep.lineNumber", "true"),
                       ("grep.column", "true"), ("grep.fullName", "true")):  # fmt: skip
        sh(root, "config", key, value)
    commit(root, {".gitignore": "*.log\n", "a.py": "x = 1\n# TODO: one\n"})
    write(root, {"sub/new.py": "# TODO: two\n", "skip.log": "# TODO: ignored\n"})
    write(root, {"vendor/lib.py": "# TODO: vendored\n"})
    (root / "blob.bin").write_bytes(b"\0TODO: binary\n")
    (root / "latin.txt").write_bytes(b"TODO: caf\xe9\n")
    found = git.grep_lines(root, r"TODO: \w+", excludes=("**/vendor/**",))
    assert found == [
        ("a.py", 2, "# TODO: one"),
        ("latin.txt", 1, "TODO: caf\ufffd"),
        ("sub/new.py", 1, "# TODO: two"),
    ]
    assert git.grep_lines(root, "no such text anywhere") == []


def test_grep_lines_raises_on_a_bad_pattern(root: Path) -> None:
    with pytest.raises(GitError):
        git.grep_lines(root, "(unclosed")


def test_line_counts_counts_lines_of_non_empty_text_files(root: Path) -> None:
    write(root, {"three.txt": "1\n2\n3\n", "empty.txt": "", "no-newline.txt": "a\nb"})
    (root / "blob.bin").write_bytes(b"\0\1\2\n")
    assert git.line_counts(root, excludes=("src/**",)) == {
        "README.md": 1, "no-newline.txt": 2, "three.txt": 3,
    }  # fmt: skip


def test_files_with_markers_finds_conflict_marker_lines_only(root: Path) -> None:
    head = commit(root, {
        "conflicted.txt": "<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> lane\n",
        "prose.md": "Title\n=======\n",
        "docs/inline.txt": "text <<<<<<< not at line start\n",
    })  # fmt: skip
    assert git.files_with_markers(root, head) == ["conflicted.txt"]
    assert git.files_with_markers(root, head, ["docs", "prose.md"]) == []


# --- What doctor asks ------------------------------------------------------------------


def test_version_is_a_tuple_of_numbers(root: Path) -> None:
    found = git.version(root)
    assert found is not None
    assert found >= (2, 38)
    assert found == tuple(int(n) for n in sh(root, "--version").split()[2].split(".")[:3])


def test_remote_known_asks_the_config_only(root: Path) -> None:
    assert not git.remote_known(root, "origin")
    sh(root, "remote", "add", "origin", "https://unreachable.invalid/repo.git")
    assert git.remote_known(root, "origin")


# --- The conflict radar and rework ------------------------------------------------------


def test_working_tree_snapshots_a_worktree_without_touching_it(root: Path, tmp_path: Path) -> None:
    lane = linked(root, "lane-a")
    admin = admin_of(root, lane)
    write(lane, {"README.md": "edited\n", "new.txt": "n\n"})
    (lane / "src" / "app.py").unlink()
    index = tmp_path / "scratch-index"
    index.write_bytes((admin / "index").read_bytes())
    before = (admin / "index").read_bytes()
    tree = git.working_tree(admin, lane, index)
    assert (admin / "index").read_bytes() == before
    assert sorted(git.dirty_files(lane)) == ["README.md", "new.txt", "src/app.py"]
    head = sh(root, "rev-parse", "lane-a")
    snap = git.commit_of_tree(root, tree, head, "radar\n", ("Radar", "radar@x.invalid"))
    assert git.head_commit(root, "lane-a") == head  # on no branch
    assert sh(root, "log", "-1", "--format=%an <%ae> %P", snap) == f"Radar <radar@x.invalid> {head}"
    assert git.changed_files(root, head, snap) == ["README.md", "new.txt", "src/app.py"]


def test_merge_into_worktree_commits_a_clean_merge(root: Path) -> None:
    lane = linked(root, "lane-a")
    env = git.worktree_env(admin_of(root, lane), lane)
    commit(lane, {"lane.txt": "l\n"})
    main = commit(root, {"main.txt": "m\n"})
    assert git.merge_into_worktree(lane, main, "merge main", env) == []
    assert not git.merge_in_progress(lane, env)
    assert len(sh(lane, "rev-list", "--parents", "-n1", "HEAD").split()) == 3
    assert (lane / "main.txt").exists()


def test_merge_into_worktree_leaves_a_conflict_in_progress_with_markers(root: Path) -> None:
    lane = linked(root, "lane-a")
    env = git.worktree_env(admin_of(root, lane), lane)
    commit(lane, {"README.md": "lane\n"})
    main = commit(root, {"README.md": "main\n"})
    assert git.merge_into_worktree(lane, main, "merge main", env) == ["README.md"]
    assert git.merge_in_progress(lane, env)
    assert git.unmerged_files(lane, env) == ["README.md"]
    assert "<<<<<<< " in (lane / "README.md").read_text(encoding="utf-8")
    sh(lane, "commit", "-q", "-am", "markers left in")
    assert git.files_with_markers(root, "lane-a") == ["README.md"]


def test_merge_into_worktree_refused_before_merging_raises_and_changes_nothing(
    root: Path,
) -> None:
    lane = linked(root, "lane-a")
    env = git.worktree_env(admin_of(root, lane), lane)
    head = sh(lane, "rev-parse", "HEAD")
    main = commit(root, {"in-the-way.txt": "main\n"})
    write(lane, {"in-the-way.txt": "untracked in the lane\n"})
    with pytest.raises(GitError, match="would be overwritten"):
        git.merge_into_worktree(lane, main, "merge main", env)
    assert not git.merge_in_progress(lane, env)
    assert git.head_commit(lane) == head
    assert (lane / "in-the-way.txt").read_text(encoding="utf-8") == "untracked in the lane\n"
