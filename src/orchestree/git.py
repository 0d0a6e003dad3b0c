"""The only module that runs git. Small typed functions, each named for its question.

Every call goes through `run()`: an argument list (never a shell), the inherited
`GIT_*` variables stripped so a caller's environment cannot point us at another
repository, and a `GitError(cmd, code, stderr)` on failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from orchestree.errors import EnvironmentRefused, GitError

# Variables that would make git act on another repository or index than the one asked.
_STRIPPED = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX")
# Parallel lanes must not race a background gc (DESIGN.md §5-§6).
NO_GC = (("gc.auto", "0"), ("maintenance.auto", "false"))


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED}
    env.update(config_env(NO_GC))
    if extra:
        env.update(extra)
    return env


def config_env(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """`GIT_CONFIG_COUNT/KEY/VALUE` settings for every git that inherits this env."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def run(
    *args: str,
    cwd: Path,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = ("git", *args)
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=git_env(env),
        input=input,
        capture_output=True,
        text=True,
        stdin=None if input is not None else subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise GitError(cmd, proc.returncode, proc.stderr or proc.stdout)
    return proc


def out(*args: str, cwd: Path) -> str:
    return run(*args, cwd=cwd).stdout.strip()


def _main_worktree(path: Path) -> Path | None:
    """The nearest folder holding `path` (resolved) with a `.git` folder: a repository's
    main worktree, as git finds it, without starting git. None for what git must judge:
    a `.git` file (a linked worktree, a submodule), a variable that bounds git's search
    (`run` drops GIT_DIR and GIT_WORK_TREE), no `.git` at all (git names the problem)."""
    if os.environ.keys() & {"GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM"}:
        return None
    for folder in (path, *path.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return folder
        if dot.exists():
            return None
    return None


def repo_root(path: Path) -> Path:
    """The top of the working tree that holds `path`; exit 3 outside a repository."""
    if not path.exists():
        raise EnvironmentRefused(f"{path} does not exist; pass an existing repository folder")
    found = _main_worktree(path.resolve())
    if found is not None:
        return found
    proc = run("rev-parse", "--show-toplevel", cwd=path, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise EnvironmentRefused(
            f"{path} is not inside a git repository; run orchestree in one (or `git init` first)"
        )
    return Path(proc.stdout.strip())


@functools.lru_cache(maxsize=64)
def common_dir(root: Path) -> Path:
    """The `.git` folder shared by every worktree of this repository (it never moves
    while we run, so it is asked once per root): a main worktree's own `.git` folder."""
    if _main_worktree(root.resolve()) == root.resolve():
        return root.resolve() / ".git"
    return Path(out("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=root))


def head_commit(root: Path, rev: str = "HEAD") -> str | None:
    proc = run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=root, check=False)
    return proc.stdout.strip() or None


def current_branch(root: Path) -> str | None:
    """The branch checked out in `root`, or None when HEAD is detached."""
    proc = run("symbolic-ref", "--quiet", "--short", "HEAD", cwd=root, check=False)
    return proc.stdout.strip() or None


def add_excludes(root: Path, patterns: list[str]) -> list[str]:
    """Add patterns to the shared `info/exclude` once; returns the ones added."""
    exclude = common_dir(root) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    present = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
    missing = [p for p in patterns if p not in present]
    if missing:
        with exclude.open("a", encoding="utf-8") as fh:
            if present and present[-1] != "":
                fh.write("\n")
            fh.write("# orchestree\n" if "# orchestree" not in present else "")
            fh.writelines(f"{p}\n" for p in missing)
    return missing


FALLBACK_IDENTITY = ("orchestree", "orchestree@localhost")


def identity(root: Path) -> tuple[str, str]:
    """The repository's configured user.name and user.email, else orchestree's own."""
    name = run("config", "user.name", cwd=root, check=False).stdout.strip()
    email = run("config", "user.email", cwd=root, check=False).stdout.strip()
    return (name or FALLBACK_IDENTITY[0], email or FALLBACK_IDENTITY[1])


def ls_files(root: Path) -> list[str]:
    """Tracked files plus untracked ones that are not ignored, relative to `root`."""
    raw = run("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root).stdout
    return sorted({p for p in raw.split("\0") if p})


# --- Worktree and branch administration -------------------------------------------
# Parallel `git worktree add` in one repository races on `.git/worktrees/<id>/` files
# (DESIGN.md §6: 2 failures in 60 at 12-way), so every administration step takes one
# lock keyed on the common git dir, held only for that step. Populating a worktree
# (`reset --hard`) runs outside it, in parallel.

_TRANSIENT = ("commondir", "config.lock", ".lock': File exists", "unable to create", "gitdir")


@contextlib.contextmanager
def admin_lock(root: Path) -> Iterator[None]:
    lock = common_dir(root) / "orchestree-admin.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def branch_exists(root: Path, branch: str) -> bool:
    return head_commit(root, f"refs/heads/{branch}") is not None


class Worktree(NamedTuple):
    path: Path
    head: str | None
    branch: str | None
    prunable: bool
    locked: bool = False  # `git worktree lock`: git refuses to remove or prune it


def worktree_list(root: Path) -> list[Worktree]:
    raw = run("worktree", "list", "--porcelain", "-z", cwd=root).stdout
    found: list[Worktree] = []
    fields: dict[str, str] = {}
    for item in [*raw.split("\0"), ""]:
        if item:
            key, _, value = item.partition(" ")
            fields[key] = value
            continue
        if "worktree" in fields:
            branch = fields.get("branch", "")
            found.append(
                Worktree(
                    path=Path(fields["worktree"]),
                    head=fields.get("HEAD"),
                    branch=branch.removeprefix("refs/heads/") or None,
                    prunable="prunable" in fields,
                    locked="locked" in fields,
                )
            )
        fields = {}
    return found


def worktree_add(root: Path, path: Path, branch: str, start: str, populate: bool = True) -> None:
    """Create `path` on a new `branch` at commit `start`, populated unless told not to
    (the caller then runs `reset -q --hard <start>` in it, e.g. in the lane's process).

    The administration runs under the lock; the checkout runs outside it. A known
    transient failure is retried once its leftovers are undone; any other is raised.

    `--force` spares git two of its three reads of every registered worktree (its
    cost grew with the lanes a run had made: 5 ms an add beside 24 worktrees, 32 ms
    beside 500). What it waives cannot happen here: `-b` refuses a branch that
    exists, so the new one is checked out nowhere, and git still refuses a folder
    that is not empty. A registration left by a folder someone deleted, at this very
    path, is dropped, as `git worktree prune` would; a locked one still refuses.
    """
    for attempt in range(3):
        try:
            with admin_lock(root):
                run("worktree", "add", "--force", "--no-checkout", "--no-track", "-b", branch,
                    str(path), start, cwd=root)  # fmt: skip
            break
        except GitError as exc:
            if attempt == 2 or not any(sign in exc.stderr for sign in _TRANSIENT):
                raise
            with admin_lock(root):
                _undo_add(root, path, branch, start)
    if populate:
        run("reset", "-q", "--hard", start, cwd=path)


def _undo_add(root: Path, path: Path, branch: str, start: str) -> None:
    # Undo only what the failed attempt made: a branch still at `start`, our folder.
    if head_commit(root, f"refs/heads/{branch}") == start:
        run("branch", "-D", branch, cwd=root, check=False)
    run("worktree", "remove", "--force", str(path), cwd=root, check=False)
    run("worktree", "prune", cwd=root, check=False)


def worktree_remove(root: Path, path: Path, force: bool = False) -> None:
    with admin_lock(root):
        run("worktree", "remove", *(["--force"] if force else []), str(path), cwd=root)


def worktree_prune(root: Path) -> None:
    with admin_lock(root):
        run("worktree", "prune", cwd=root)


def worktree_forget(root: Path, admins: list[Path]) -> None:
    """Unregister worktrees whose folders the caller deleted: remove their admin folders
    (`<common dir>/worktrees/<id>`), which is all `git worktree prune` does for each, but
    only for these (a prune would also drop the user's own stale worktrees)."""
    folder = common_dir(root) / "worktrees"
    with admin_lock(root):
        for admin in admins:
            if admin.parent.resolve() != folder.resolve():
                raise GitError(("worktree", "forget", str(admin)), 1, "not a worktree admin folder")
            shutil.rmtree(admin, ignore_errors=True)


def delete_refs(root: Path, refs: dict[str, str]) -> None:
    """Delete each ref of `refs` (full name -> the commit it must still be at) in one
    `update-ref --stdin` transaction: all are deleted or none (GitError). Unlike
    `git branch -d`, it does not ask whether a branch is checked out: the caller does."""
    if refs:
        lines = "".join(f"delete {ref} {old}\n" for ref, old in refs.items())
        with admin_lock(root):
            run("update-ref", "--stdin", cwd=root, input=lines)


def branch_delete(root: Path, branch: str, force: bool = False) -> None:
    with admin_lock(root):
        run("branch", "-D" if force else "-d", branch, cwd=root)


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    return run("merge-base", "--is-ancestor", older, newer, cwd=root, check=False).returncode == 0


def file_at(root: Path, commit: str, path: str) -> str | None:
    """The text of `path` in `commit`, or None when the commit has no such file."""
    proc = run("show", f"{commit}:{path}", cwd=root, check=False)
    return proc.stdout if proc.returncode == 0 else None


def dirty_files(path: Path, untracked: bool = True) -> list[str]:
    """Files with uncommitted changes in the worktree at `path` (tracked ones first)."""
    mode = "--untracked-files=all" if untracked else "--untracked-files=no"
    raw = run("status", "--porcelain", "-z", mode, cwd=path).stdout
    files: list[str] = []
    items = iter(raw.split("\0"))
    for item in items:
        if not item:
            continue
        files.append(item[3:])
        if item[0] in "RC":
            next(items, None)  # the rename's source path follows
    return files


def commit_all(
    path: Path,
    message: str,
    env: dict[str, str] | None = None,
    keep_out: tuple[str, ...] | list[str] = (),
    setup_made: dict[str, str] | None = None,
) -> str | None:
    """Commit everything uncommitted in `path` (respecting ignores); the new sha or None.

    `env` names the repository explicitly (`worktree_env`), so a `.git` link the agent
    rewrote cannot send the commit elsewhere; paths in `keep_out` (orchestree's own,
    the files copied in from `.worktreeinclude`) are never taken, whatever an agent's
    `.gitignore` un-ignores. `setup_made` (file -> blob id, "" for a deleted file)
    names files to leave out while they are still exactly so: what `[worktree] setup`
    made, not the agent.
    """
    # Three git calls where asking first (status, then diff --cached) took five: commit
    # and read its answer. "Nothing to commit" is exit 1 with that sentence on stdout.
    run("add", "-A", cwd=path, env=env)
    left_out = list(keep_out)
    if setup_made:
        now = hash_files(path, list(setup_made), env=env)
        left_out += [f for f, blob in setup_made.items() if now.get(f, "") == blob]
    if left_out:  # back to HEAD's state: staged by `add -A` or by the agent, all the same
        literal_env = {**(env or {}), "GIT_LITERAL_PATHSPECS": "1"}
        run("reset", "-q", "--pathspec-from-file=-", "--pathspec-file-nul", cwd=path,
            input="\0".join(left_out), env=literal_env)  # fmt: skip
    proc = run("commit", "-q", "--no-verify", "-m", message, cwd=path, check=False,
               env={**(env or {}), "LC_ALL": "C"})  # fmt: skip
    if proc.returncode != 0:
        said = proc.stdout
        if any(f"{w} to commit" in said for w in ("nothing", "nothing added", "no changes added")):
            return None
        raise GitError(("git", "commit", "-m", message), proc.returncode, proc.stderr)
    return run("rev-parse", "HEAD", cwd=path, env=env).stdout.strip()


def worktree_env(admin: Path, path: Path) -> dict[str, str]:
    """Run git on the worktree at `path` through its admin folder, never its `.git` link."""
    return {"GIT_DIR": str(admin), "GIT_WORK_TREE": str(path)}


ATTEMPTS_REFS = "refs/orchestree/attempts"


def keep_attempt_head(root: Path, lane_id: str, attempt: int, commit: str) -> str:
    """Keep `commit` reachable as `refs/orchestree/attempts/<lane>/<attempt>`; the ref.

    A ref already there at another commit is never moved: the next free
    `<attempt>-<k>` is used instead, so no kept head is ever lost.
    """
    base = f"{ATTEMPTS_REFS}/{lane_id}/{attempt}"
    for k in range(1, 100):
        ref = base if k == 1 else f"{base}-{k}"
        have = head_commit(root, ref)
        if have == commit:
            return ref
        if have is None and update_ref(root, ref, commit, ""):  # "": must not exist yet
            return ref
    raise GitError(("git", "update-ref", base, commit), 1, f"no free ref under {base}")


def tracked_under(root: Path, rev: str, paths: list[str]) -> list[str]:
    """Files of commit `rev` at or under any of `paths` (each taken literally)."""
    if not paths:
        return []
    raw = literal("ls-tree", "-r", "-z", "--name-only", "--full-tree", rev, "--", *paths,
                  cwd=root).stdout  # fmt: skip
    return [p for p in raw.split("\0") if p]


def revs_holding(root: Path, revs: list[str], paths: list[str]) -> set[str]:
    """The commits of `revs` whose tree holds something at any of `paths` (names
    without a newline): one `cat-file --batch-check` for them all, where `tracked_under`
    is a call per commit."""
    asked = [(rev, path) for rev in dict.fromkeys(revs) for path in paths]
    if not asked:
        return set()
    said = run("cat-file", "--batch-check=%(objectname)", cwd=root,
               input="".join(f"{rev}:{path}\n" for rev, path in asked)).stdout  # fmt: skip
    # One line an object: its id, or "<what was asked> missing".
    return {rev for (rev, _), line in zip(asked, said.splitlines(), strict=True)
            if not line.endswith(" missing")}  # fmt: skip


def is_tracked(root: Path, rel: str) -> bool:
    """Does the index of the worktree at `root` hold `rel` or anything under it?"""
    raw = literal("ls-files", "-z", "--", rel, cwd=root).stdout
    return bool(raw.strip("\0"))


def added_files(root: Path, old: str, new: str) -> list[str]:
    """Files that `new` has and `old` does not."""
    raw = run("diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", old, new,
              cwd=root).stdout  # fmt: skip
    return [p for p in raw.split("\0") if p]


def changed_files(root: Path, old: str, new: str) -> list[str]:
    raw = run("diff", "--name-only", "-z", "--no-renames", old, new, cwd=root).stdout
    return [p for p in raw.split("\0") if p]


def changed_blobs(root: Path, old: str, new: str) -> dict[str, str]:
    """Each file changed from `old` to `new` -> what `new` has there ("<mode> <blob>";
    a deleted file's is all zeros): two sides that changed a file to the same
    content cannot conflict on it."""
    raw = run("diff", "--raw", "-z", "--no-renames", "--no-abbrev", old, new, cwd=root).stdout
    # -z: ":<old mode> <new mode> <old blob> <new blob> <status>\0<path>\0", per file.
    items = raw.split("\0")
    found: dict[str, str] = {}
    for info, path in zip(items[0::2], items[1::2], strict=False):
        fields = info.split()
        if path and len(fields) >= 4:
            found[path] = f"{fields[1]} {fields[3]}"
    return found


# --- Merges computed without a working tree (DESIGN.md §8) -------------------------


class TreeMerge(NamedTuple):
    tree: str | None  # the merged tree, or None on conflict
    conflicts: list[str]


def merge_tree(root: Path, ours: str, theirs: str) -> TreeMerge:
    """Merge two commits in memory; touches no ref, index or file."""
    proc = run("merge-tree", "--write-tree", "--name-only", "-z", ours, theirs,
               cwd=root, check=False)  # fmt: skip
    # -z output: <tree>\0<file>\0...\0\0<messages>; with --name-only one name per file.
    head, _, rest = proc.stdout.partition("\0")
    # Exit 1 without a tree is git refusing its input (an unknown commit), not a conflict.
    if proc.returncode not in (0, 1) or not head.strip():
        raise GitError(("git", "merge-tree", ours, theirs), proc.returncode, proc.stderr)
    if proc.returncode == 0:
        return TreeMerge(head.strip(), [])
    names, _, _messages = rest.partition("\0\0")
    return TreeMerge(None, sorted({n for n in names.split("\0") if n}))


def commit_tree(root: Path, tree: str, parents: list[str], message: str) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return run(*args, "-F", "-", cwd=root, input=message).stdout.strip()


def update_ref(root: Path, ref: str, new: str, old: str) -> bool:
    """Move `ref` from `old` to `new` only if it is still at `old` (compare-and-swap)."""
    proc = run("update-ref", ref, new, old, cwd=root, check=False)
    return proc.returncode == 0


# --- Publishing merges, repairing an interrupted one, cleaning up (issue 4) ---------


def literal(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`run` with paths taken literally (a file named `*.py` means that file)."""
    return run("--literal-pathspecs", *args, cwd=cwd, input=input)


def worktree_add_detached(root: Path, path: Path, commit: str) -> None:
    """A scratch worktree at `commit` on no branch (for verification)."""
    with admin_lock(root):
        run("worktree", "add", "--detach", "--no-checkout", str(path), commit, cwd=root)
    run("reset", "-q", "--hard", commit, cwd=path)


def checkout_clean(path: Path, commit: str) -> None:
    """Make the worktree at `path` exactly `commit`: tracked files reset, all else removed."""
    run("reset", "-q", "--hard", commit, cwd=path)
    run("clean", "-ffdxq", cwd=path)


def merge_ff_only(path: Path, commit: str) -> subprocess.CompletedProcess[str]:
    """Fast-forward the branch checked out at `path` to `commit` (files follow), unchecked."""
    return run("merge", "--ff-only", "--quiet", "--no-edit", commit, cwd=path, check=False)


def refs_merged_into(root: Path, commit: str, pattern: str) -> set[str]:
    """Short names of the refs matching `pattern` whose head is an ancestor of `commit`."""
    raw = run("for-each-ref", f"--merged={commit}", "--format=%(refname:short)", pattern,
              cwd=root).stdout  # fmt: skip
    return {line for line in raw.splitlines() if line}


def merges_by_second_parent(root: Path, tip: str, since: str) -> dict[str, str]:
    """Merge commits on `tip`'s first-parent line after `since`: second parent -> merge."""
    raw = run("rev-list", "--first-parent", "--merges", "--parents", tip, f"^{since}",
              cwd=root).stdout  # fmt: skip
    found: dict[str, str] = {}
    for line in raw.splitlines():
        commit, *parents = line.split()
        for parent in parents[1:]:
            found.setdefault(parent, commit)
    return found


def blob_ids(root: Path, commit: str, paths: list[str]) -> dict[str, str]:
    """The blob each of `paths` has in `commit` (paths absent there are left out)."""
    if not paths:
        return {}
    raw = literal("ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths, cwd=root).stdout
    found: dict[str, str] = {}
    for entry in raw.split("\0"):
        if entry:
            info, _, path = entry.partition("\t")
            found[path] = info.split()[2]
    return found


# The empty tree, by the length of the repository's object ids (SHA-1, SHA-256): git
# knows it without storing it, so a diff from it lists a commit's files.
_EMPTY_TREE = {
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}


# A user's GIT_LITERAL_PATHSPECS (or NOGLOB, ICASE) would refuse or change the globs.
_GLOBS_ONLY = {
    "GIT_LITERAL_PATHSPECS": "0",
    "GIT_NOGLOB_PATHSPECS": "0",
    "GIT_ICASE_PATHSPECS": "0",
}


def files_matching(root: Path, commit: str, patterns: list[str]) -> list[str]:
    """`<mode> <object id> <path>` of each file of `commit` (a full id) that one of
    `patterns` matches, as glob pathspecs (`*` stops at a `/`, `**/` crosses folders, a
    folder matches what is under it), in path order: one call (`ls-tree` has no globs)."""
    if not patterns:
        return []
    raw = run("--glob-pathspecs", "diff-tree", "-r", "-z", "--no-renames",
              _EMPTY_TREE[len(commit)], commit, "--", *patterns, cwd=root,
              env=_GLOBS_ONLY).stdout  # fmt: skip
    # -z: ":000000 <mode> <zeros> <object id> A\0<path>\0", per file.
    items = raw.split("\0")
    found = []
    for info, path in zip(items[0::2], items[1::2], strict=False):
        fields = info.split()
        if path and len(fields) >= 4:
            found.append(f"{fields[1]} {fields[3]} {path}")
    return found


def hash_files(path: Path, files: list[str], env: dict[str, str] | None = None) -> dict[str, str]:
    """The blob id each existing file of `files` in the worktree at `path` would get."""
    present = [f for f in files if (path / f).is_file() or (path / f).is_symlink()]
    if not present:
        return {}
    raw = run("hash-object", "--stdin-paths", cwd=path, input="\n".join(present) + "\n",
              env=env).stdout  # fmt: skip
    return dict(zip(present, raw.split(), strict=True))


def reset_index(path: Path) -> None:
    """Make the index match HEAD; the files in the worktree are left as they are."""
    run("reset", "-q", cwd=path)


def restore_files(path: Path, files: list[str]) -> None:
    """Write `files` in the worktree at `path` as the index has them."""
    if files:
        literal("checkout", "-q", "--", *files, cwd=path)


def git_path(path: Path, name: str) -> Path:
    """Where the worktree at `path` keeps its own `name` (e.g. `index.lock`)."""
    return (path / out("rev-parse", "--git-path", name, cwd=path)).resolve()


def ref_heads(root: Path, pattern: str) -> dict[str, str]:
    """Short name -> commit of every ref matching `pattern`, in one call."""
    raw = run("for-each-ref", "--format=%(refname:short) %(objectname)", pattern, cwd=root).stdout
    return dict(line.split(" ", 1) for line in raw.splitlines() if line)


# --- Searching the working tree (the probes) -------------------------------------

# Settings a user's config could set that change `git grep`'s output format.
_GREP_CONFIG = (
    *("-c", "color.grep=never", "-c", "grep.column=false", "-c", "grep.fullName=false"),
    *("-c", "grep.lineNumber=false", "-c", "grep.fallbackToNoIndex=false"),
)


def _grep(root: Path, args: tuple[str, ...], excludes: tuple[str, ...]) -> bytes:
    """`git grep` over text files, tracked or untracked but not ignored; raw output.

    Bytes, not text: matched lines come from arbitrary files, not all of them UTF-8.
    `excludes` are glob pathspecs (`**/vendor/**`) left out of the search.
    """
    specs = [f":(exclude,glob){pattern}" for pattern in excludes]
    cmd = ("git", *_GREP_CONFIG, "grep", "--untracked", "-I", "-z", *args, "--", *specs)
    proc = subprocess.run(
        cmd, cwd=root, env=git_env(), capture_output=True, stdin=subprocess.DEVNULL, check=False
    )
    if proc.returncode > 1:  # 1 means "no match"
        raise GitError(cmd, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def grep_lines(
    root: Path, pattern: str, excludes: tuple[str, ...] = ()
) -> list[tuple[str, int, str]]:
    """Lines matching the extended regex `pattern`: (path, line number, line text)."""
    raw = _grep(root, ("-n", "-E", "-e", pattern), excludes)
    found = []
    pos = 0
    while pos < len(raw):  # records: path NUL number NUL text LF (a path may hold LF)
        path_end = raw.index(b"\0", pos)
        num_end = raw.index(b"\0", path_end + 1)
        text_end = raw.index(b"\n", num_end + 1)
        path = os.fsdecode(raw[pos:path_end])
        text = raw[num_end + 1 : text_end].decode("utf-8", "replace")
        found.append((path, int(raw[path_end + 1 : num_end]), text))
        pos = text_end + 1
    return found


def line_counts(root: Path, excludes: tuple[str, ...] = ()) -> dict[str, int]:
    """Lines of every non-empty text file (binary files are absent), searched in parallel."""
    raw = _grep(root, ("-c", "-e", ""), excludes)
    counts = {}
    pos = 0
    while pos < len(raw):  # records: path NUL count LF
        path_end = raw.index(b"\0", pos)
        count_end = raw.index(b"\n", path_end + 1)
        counts[os.fsdecode(raw[pos:path_end])] = int(raw[path_end + 1 : count_end])
        pos = count_end + 1
    return counts


# --- What `orchestree doctor` and the preflight ask (issue 21) -----------------------


def version(cwd: Path) -> tuple[int, ...] | None:
    """git's version as numbers, e.g. (2, 43, 0); None when git does not run."""
    try:
        text = run("--version", cwd=cwd, check=False).stdout
    except OSError:
        return None
    words = text.split()
    numbers = words[2].split(".") if len(words) > 2 else []
    return tuple(int(n) for n in numbers if n.isdigit()) or None


def remote_known(root: Path, remote: str) -> bool:
    """True when `remote` is a configured remote of `root` (its URL is not contacted)."""
    return run("remote", "get-url", remote, cwd=root, check=False).returncode == 0


def set_ref(root: Path, ref: str, commit: str) -> None:
    """Point `ref` (outside refs/heads) at `commit`, creating or moving it."""
    run("update-ref", ref, commit, cwd=root)


def delete_ref(root: Path, ref: str) -> None:
    """Remove `ref`; nothing happens when it does not exist."""
    run("update-ref", "-d", ref, cwd=root, check=False)


def all_refs(root: Path) -> dict[str, str]:
    """Full name -> object id of every ref (loose and packed), in one call."""
    raw = run("for-each-ref", "--format=%(refname) %(objectname)", cwd=root).stdout
    return dict(line.split(" ", 1) for line in raw.splitlines() if line)


def export_tree(root: Path, commit: str, dest: Path) -> None:
    """The files of `commit` written into the new folder `dest`: no .git, no index,
    nothing registered (a scratch tree to run a setup in)."""
    import tarfile  # here, not at the top: every command imports this module

    dest.mkdir(parents=True)
    archive = dest.with_name(dest.name + ".tar")
    try:
        run("archive", "--format=tar", "-o", str(archive), commit, cwd=root)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="tar")
    finally:
        archive.unlink(missing_ok=True)


# --- The conflict radar (DESIGN.md §13) ----------------------------------------------


def working_tree(admin: Path, path: Path, index: Path) -> str:
    """The tree of the files in the worktree at `path` as `git add -A` would commit
    them, without touching that worktree, its index or its branch.

    Staging goes into `index`, a scratch file the caller owns (start it as a copy of
    the worktree's index, so unchanged files are not read again); git is pointed at
    the worktree through its admin folder `admin`, never through its `.git` link.
    Objects for the agent's files enter the shared object store, unreferenced; the
    gc that would eventually prune them is the repository's normal one."""
    env = {**worktree_env(admin, path), "GIT_INDEX_FILE": str(index)}
    # One index file, whole: no split index or fsmonitor state written beside it.
    settings = ("-c", "core.splitIndex=false", "-c", "core.fsmonitor=false")
    run(*settings, "add", "-A", cwd=path, env=env)
    return run(*settings, "write-tree", cwd=path, env=env).stdout.strip()


def working_tree_beside(admin: Path, path: Path, scratch: Path) -> str:
    """`working_tree` with its scratch index at `scratch` (a file the caller owns and
    removes), started as a copy of the worktree's own index (`admin/index`)."""
    with contextlib.suppress(FileNotFoundError):  # none yet: git starts empty
        shutil.copyfile(admin / "index", scratch)
    return working_tree(admin, path, scratch)


def commit_of_tree(root: Path, tree: str, parent: str, message: str, who: tuple[str, str]) -> str:
    """A commit of `tree` on top of `parent` by `who` (name, email), on no branch:
    `merge-tree` takes commits."""
    name, email = who
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}  # fmt: skip
    return run("commit-tree", tree, "-p", parent, "-F", "-", cwd=root, input=message,
               env=env).stdout.strip()  # fmt: skip


def merge_base(root: Path, one: str, other: str) -> str | None:
    """The best common ancestor of two commits, or None when they share none."""
    proc = run("merge-base", one, other, cwd=root, check=False)
    return proc.stdout.strip() or None


# --- Rework (DESIGN.md §13): the base merged into a lane's worktree, markers left ----

MARKERS = r"^(<<<<<<<|>>>>>>>)( |$)"  # the lines a conflict leaves; `=======` alone is prose


def merge_into_worktree(path: Path, commit: str, message: str, env: dict[str, str]) -> list[str]:
    """`git merge --no-ff commit` in the worktree at `path` (through `env`, its admin
    folder: `worktree_env`). A clean merge is committed; a conflicted one is left in
    progress with its markers in place. Returns the unmerged files, [] when clean."""
    proc = run("merge", "--no-ff", "--no-edit", "-m", message, commit, cwd=path, check=False,
               env={**env, "LC_ALL": "C"})  # fmt: skip
    if proc.returncode == 0:
        return []
    unmerged = unmerged_files(path, env)
    if not unmerged:  # refused before merging (files in the way, say): nothing changed
        raise GitError(("git", "merge", commit), proc.returncode, proc.stderr or proc.stdout)
    return unmerged


def unmerged_files(path: Path, env: dict[str, str]) -> list[str]:
    """The files a merge in progress in the worktree at `path` left conflicted."""
    raw = run("diff", "--name-only", "-z", "--diff-filter=U", cwd=path, env=env).stdout
    return [p for p in raw.split("\0") if p]


def merge_in_progress(path: Path, env: dict[str, str]) -> bool:
    """Whether the worktree at `path` is in the middle of a merge (MERGE_HEAD is set)."""
    proc = run("rev-parse", "-q", "--verify", "MERGE_HEAD", cwd=path, env=env, check=False)
    return proc.returncode == 0


def files_with_markers(root: Path, commit: str, paths: list[str] | None = None) -> list[str]:
    """Files of `commit` (all, or those under `paths`) holding conflict-marker lines."""
    spec = ["--", *paths] if paths else []
    proc = run("--literal-pathspecs", "grep", "-l", "-I", "-E", "-e", MARKERS, commit, *spec,
               cwd=root, check=False)  # fmt: skip
    if proc.returncode == 1:
        return []
    if proc.returncode != 0:
        raise GitError(("git", "grep", commit), proc.returncode, proc.stderr)
    return sorted({line.split(":", 1)[1] for line in proc.stdout.splitlines() if ":" in line})


# --- A lane's diff (`orchestree diff`, the dashboard's diff panel) -------------------

# Plain, whatever the user's config says: the patch is parsed or shown as text.
_PLAIN_DIFF = ("--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/",
               "--dst-prefix=b/", "--no-renames")  # fmt: skip


class FileCount(NamedTuple):
    path: str
    added: int
    removed: int
    binary: bool


def diff_counts(root: Path, old: str, new: str) -> list[FileCount]:
    """Lines added and removed per file from `old` to `new` (commits or trees)."""
    raw = run("diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv",
              old, new, cwd=root).stdout  # fmt: skip
    found = []
    for record in raw.split("\0"):  # with -z and no renames: added TAB removed TAB path
        if record:
            added, removed, path = record.split("\t", 2)
            binary = added == "-"
            found.append(FileCount(path, 0 if binary else int(added),
                                   0 if binary else int(removed), binary))  # fmt: skip
    return found


def diff_bytes(root: Path, old: str, new: str, *extra: str) -> bytes:
    """`git diff` from `old` to `new`, plain (no colour, pager or external tool), as
    bytes: a patch holds the files' own bytes, not all of them UTF-8."""
    cmd = ("git", "diff", *_PLAIN_DIFF, *extra, old, new)
    proc = subprocess.run(cmd, cwd=root, env=git_env(), capture_output=True,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise GitError(cmd, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def diff_to_terminal(root: Path, old: str, new: str, *extra: str) -> int:
    """`git diff` from `old` to `new` straight onto our terminal, through the user's
    pager and colours as their git config says; git's exit code."""
    cmd = ("git", "--paginate", "diff", "--no-renames", *extra, old, new)
    return subprocess.run(cmd, cwd=root, env=git_env(), check=False).returncode
