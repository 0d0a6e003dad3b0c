"""Agent text shown as text (DESIGN.md §16): never as terminal commands or Rich markup.

Progress, errors, names and logs are written by agents, which are untrusted. A raw
escape sequence (`ESC [2J`) would clear the user's screen, a `\\r` would overwrite the
line it sits on, and Rich would read `[link=...]` or `[bold red]` as markup. So every
view passes that text through `visible` (control characters become escapes you can
read, such as `\\x1b`), and hands it to Rich only inside a `rich.text.Text`, which
never parses markup.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls (0x9b is a one-byte CSI on some terminals).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\r": "\\r", "\t": "\\t", "\n": "\\n"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def visible(text: str, keep: str = "") -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\r`),
    except those in `keep` (a log keeps its newlines and tabs)."""
    if keep:
        return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)
    return _CONTROL.sub(_escape, text)
