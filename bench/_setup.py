"""What every bench shares: the installed `orchestree` program beside this Python, and
the fixed git identity its throwaway repositories commit with."""

from __future__ import annotations

import sys
from pathlib import Path

ORCHESTREE = str(Path(sys.executable).parent / "orchestree")
IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
