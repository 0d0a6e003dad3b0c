"""The chaos suite's `[merge] verify` command: records its start and end, sleeps, passes.

    python chaos_verify.py SECONDS

Records go to `$CHAOS_DIR/records/_verify.jsonl`, so the harness knows which process
to SIGKILL while a merge verifies a candidate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def record(event: str) -> None:
    line = {"ev": event, "pid": os.getpid(), "t": time.monotonic(),
            "lane": os.environ.get("ORCHESTREE_LANE")}  # fmt: skip
    path = Path(os.environ["CHAOS_DIR"]) / "records" / "_verify.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


if __name__ == "__main__":
    record("start")
    time.sleep(float(sys.argv[1]))
    record("end")
