"""The chaos runs' `[notify] command`: append the event read on stdin to a file."""

import sys

with open(sys.argv[1], "a", encoding="utf-8") as fh:
    fh.write(sys.stdin.read().strip() + "\n")
