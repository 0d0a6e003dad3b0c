"""Reading an agent-written tracker safely, and the formats both views share.

Agents write the tracker too, so a field may hold anything JSON can: each reader here
returns the expected type or a harmless default, never raises. Text comes back with its
control characters made visible (`visible.py`): a view shows agent text as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestree.visible import visible

PROGRESS_MAX = 200


def parse_time(value: Any) -> datetime | None:
    """An ISO time from the tracker (Z or offset), or None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def seconds_between(start: Any, end: Any, now: datetime, running: bool) -> float | None:
    began = parse_time(start)
    if began is None:
        return None
    ended = now if running else parse_time(end)
    if ended is None:
        return None
    return max(0.0, (ended - began).total_seconds())


def fmt_duration(seconds: float | None) -> str:
    """42s, 3m05s, 1h02m: what a person reads at a glance; "-" for unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_text(value: Any) -> str:
    """An agent's free-form progress as one short line."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    # Newlines and tabs fold into spaces below; every other control shows as an escape.
    text = " ".join(visible(text, keep="\t\n\x0b\x0c\x1c\x1d\x1e\x1f").split())
    return text if len(text) <= PROGRESS_MAX else text[: PROGRESS_MAX - 1] + "…"


def as_str(value: Any, default: str = "") -> str:
    return visible(value) if isinstance(value, str) else default


def opt_str(value: Any) -> str | None:
    return visible(value) if isinstance(value, str) and value else None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def as_strs(value: Any) -> list[str]:
    return [visible(str(v)) for v in value] if isinstance(value, list) else []


def as_dict(value: Any) -> Mapping[str, Any]:
    # A tracker comes from json.load: its objects are dicts (and dict is a cheap check).
    return value if isinstance(value, dict) else {}
