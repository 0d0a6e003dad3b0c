"""The repository context at the ground floor: where things are, its config and store.

Every phase starts from `open_repo` (or `open_run_repo`, for an agent's `tracker`
commands inside a lane); `init_repo` creates the tracker of a new run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestree import git
from orchestree.config import Config, load_config
from orchestree.fastpath import not_initialised, run_lane, run_location
from orchestree.initrepo import check_worktree_root, prepare
from orchestree.layout import Layout
from orchestree.models import Tracker
from orchestree.tracker import TrackerStore


@dataclass(frozen=True)
class Repo:
    """An initialised repository: where things are, its config and its tracker."""

    layout: Layout
    config: Config
    store: TrackerStore

    @property
    def root(self) -> Path:
        return self.layout.root


def find_root(path: Path) -> Path:
    return git.repo_root(path.resolve())


def open_repo(path: Path, must_exist: bool = True) -> Repo:
    root = find_root(path)
    config = load_config(root)
    check_worktree_root(root, config.worktree.root, ask_git=False)
    layout = Layout(root, config.worktree.root)
    store = TrackerStore(layout.tracker)
    if must_exist and not store.exists():
        raise not_initialised(root)
    return Repo(layout, config, store)


@dataclass(frozen=True)
class InitResult:
    repo: Repo
    created: bool
    excludes_added: list[str]


def init_repo(path: Path) -> InitResult:
    """Create `.orchestration/` and an empty tracker; idempotent."""
    repo = open_repo(path, must_exist=False)
    if repo.store.exists():
        repo.store.read()  # refuses a torn or newer tracker before anything changes
    done = prepare(repo.layout, repo.config.defaults.base_branch)
    load_config(repo.root)  # again, now that .orchestration/ is there to remember it in
    if repo.store.exists():
        return InitResult(repo, created=False, excludes_added=done.excludes_added)
    repo.store.create(
        Tracker(repo=str(repo.root), base_branch=done.base_branch, base_commit=done.base_commit)
    )
    return InitResult(repo, created=True, excludes_added=done.excludes_added)


def open_run_repo(path: Path) -> tuple[Repo, str | None]:
    """The run's repository for `tracker get/update`, and the lane the caller speaks for.

    `ORCHESTREE_TRACKER` (in every agent's environment) names the run's tracker. Inside
    a lane's worktree the repository is the one that worktree belongs to (its git
    common dir), never the worktree itself: a tracker there would be nobody's. The lane
    is `ORCHESTREE_LANE`, else the worktree's (`agent-<lane>`); None outside lanes.
    """
    here, main = run_location(path)
    repo = open_repo(main)
    return repo, run_lane(here, repo.layout)
