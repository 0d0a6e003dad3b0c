"""orchestree: many coding agents on one git repository, each in its own worktree."""

__version__ = "0.1.0"
