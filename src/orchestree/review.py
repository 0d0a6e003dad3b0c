"""Review comments back to the agent: `orchestree rework <lane> --message/--file`
(issue 16).

A person reads a finished lane's change (`orchestree diff`), writes what to change,
and sends it back: a new attempt of the lane's own agent, through the merge queue's
rework machinery (`rework.begin` with `review`, then `rework.run`), so it gets the
same supervision, timeout, login hold and cost accounting, resumes the agent's
session where its CLI can, and keeps the earlier attempt's head under
`refs/orchestree/attempts/<lane>/<n>`. The agent is told by `ORCHESTREE_REWORK=review`,
the comments in `ORCHESTREE_REWORK_FILE` and its prompt.

Only a lane whose work is done and not merged takes comments: completed, conflict or
verify_failed. The check and `begin` run under the run lock, so no `execute` or
`merge` changes the lane meanwhile; a SIGKILL after `begin` leaves the lane pending
with its review recorded, and the next `execute` runs it with the comments.
"""

from __future__ import annotations

from pathlib import Path

from orchestree import rework
from orchestree.errors import UserError
from orchestree.lanebook import Summary
from orchestree.repo import Repo
from orchestree.runlock import run_lock

REVIEWABLE = frozenset({"completed", "conflict", "verify_failed"})
MAX_CHARS = 100_000  # comments go into the agent's prompt: a page of review, not a book

# What to do instead, for each state a lane may be in that takes no comments.
_INSTEAD = {
    "pending": "it has not run yet: `orchestree execute` runs it",
    "running": "its agent is still at work: wait until it finishes (`orchestree status`)",
    "merged": "its work is in the base branch already: add a lane for further changes "
    "(`orchestree add-lane`)",
    "failed": "`orchestree retry {lane}` gives it another attempt",
    "cancelled": "`orchestree retry {lane}` gives it another attempt",
    "blocked": "a lane it depends on did not finish: see `orchestree status`",
}


def comments_from(message: str | None, file: Path | None) -> str:
    """The review comments from `--message` or `--file` (exactly one); UserError for
    none, both, an unreadable file or comments that say nothing."""
    if (message is None) == (file is None):
        raise UserError(
            "give the review comments with exactly one of --message TEXT or --file PATH"
        )
    where = "--message"
    if file is not None:
        where = str(file)
        try:
            message = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{file} does not exist; pass the review file's path") from None
        except UnicodeDecodeError:
            raise UserError(f"{file} is not UTF-8 text; save the review as text") from None
        except OSError as exc:
            raise UserError(f"cannot read {file} ({exc.strerror}); check the path") from None
    text = (message or "").strip()
    if not text:
        raise UserError(f"the review comments ({where}) are empty; say what to change")
    if len(text) > MAX_CHARS:
        raise UserError(
            f"the review comments ({where}) are {len(text)} characters long (at most "
            f"{MAX_CHARS}); shorten them"
        )
    return text


def send_back(repo: Repo, lane_id: str, comments: str) -> rework.Details:
    """Make `lane_id` ready for a review rework: its head kept, the comments written
    for the agent, the lane pending with `rework.reason = "review"`. `rework.run` then
    starts it. UserError (nothing changed) for a lane that takes no comments."""
    _check(repo, lane_id)  # first: a running lane is named as such, not by the lock
    with run_lock(repo.layout, "send review comments"):
        _check(repo, lane_id)  # again: nothing changes it while the lock is ours
        details = rework.Details("review", comments=comments)
        return rework.begin(repo, lane_id, "review", details)


def _check(repo: Repo, lane_id: str) -> None:
    lane = repo.store.read().lanes.get(lane_id)
    if lane is None:
        raise UserError(f"no lane {lane_id!r}; `orchestree status` lists the lanes")
    if lane.kind != "lane":
        raise UserError(f"{lane_id!r} is a {lane.kind}, not a lane; only lanes take review")
    if lane.status not in REVIEWABLE:
        instead = _INSTEAD.get(lane.status, "see `orchestree status`").format(lane=lane_id)
        raise UserError(
            f"lane {lane_id!r} is {lane.status}; review comments go to a completed, "
            f"conflict or verify_failed lane that is not merged; {instead}; nothing changed"
        )


def run(repo: Repo, lane_id: str, report: rework.Reporter) -> Summary:
    """Run the review attempt `send_back` prepared (takes the run lock itself)."""
    return rework.run(repo, {lane_id}, report)
