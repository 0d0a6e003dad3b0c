"""What every bench shares: the installed `orchestree` program beside this Python, and
the fixed git identity its throwaway repositories commit with.

The package's bytecode is compiled on import, as pip compiles an installed package: an
editable install holds none, and with PYTHONDONTWRITEBYTECODE set every process the
benches start would compile orchestree from source and time that too."""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

import orchestree

compileall.compile_dir(str(Path(orchestree.__file__).parent), quiet=1)

ORCHESTREE = str(Path(sys.executable).parent / "orchestree")
IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
