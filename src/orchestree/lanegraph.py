"""Lane ids and the graph their dependencies form: the checks the models and
`add-lane` without them (`newlanes.py`) share.
"""

from __future__ import annotations

import graphlib
import re

from orchestree.errors import UserError

LANE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_lane_id(lane_id: str) -> str:
    """Refuse an id that could escape a folder or make a bad branch name."""
    problem = None
    if not lane_id:
        problem = "is empty"
    elif lane_id.startswith("-"):
        problem = "starts with '-'"
    elif "/" in lane_id or "\\" in lane_id:
        problem = "contains a slash"
    elif ".." in lane_id:
        problem = "contains '..'"
    elif lane_id.endswith(".lock"):
        problem = "ends in '.lock'"
    elif lane_id.endswith("."):
        problem = "ends in '.'"  # git refuses a branch name ending in a dot
    elif len(lane_id) > 63:
        problem = f"is {len(lane_id)} characters long (at most 63)"
    elif not LANE_ID.fullmatch(lane_id):  # in full: `$` would let a newline through
        problem = "may hold only lowercase letters, digits, '.', '_' and '-'"
    if problem:
        raise UserError(
            f"lane id {lane_id!r} {problem}; use lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. db-projection)"
        )
    return lane_id


def is_lane_id(text: str) -> bool:
    """Whether `check_lane_id` takes `text`."""
    try:
        check_lane_id(text)
    except UserError:
        return False
    return True


def check_graph(deps: dict[str, list[str]]) -> None:
    """Every dependency names a known lane, none its own, and there is no cycle."""
    for lane_id, needs in deps.items():
        for dep in needs:
            if dep == lane_id:
                raise UserError(f"lane {lane_id!r} depends on itself; remove it from depends_on")
            if dep not in deps:
                raise UserError(
                    f"lane {lane_id!r} depends on {dep!r}, which is not a lane; "
                    "add that lane first or fix depends_on"
                )
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise UserError(f"lane dependencies form a cycle ({cycle}); break it") from None
