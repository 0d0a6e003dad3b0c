#!/usr/bin/env bash
# The seed's entry point, kept for its users: `./worktree_orchestrate.sh init`, `full`,
# `status`, ... runs orchestree with the same arguments on the git repository you stand
# in (the current directory), wherever this script itself lives.
set -euo pipefail

if command -v orchestree >/dev/null 2>&1; then
    exec orchestree "$@"
fi
if python3 -c 'import orchestree' >/dev/null 2>&1; then
    exec python3 -m orchestree "$@"
fi
echo "worktree_orchestrate.sh: orchestree is not installed; install it with" \
    "\`pip install orchestree\` (or \`pip install -e .\` in its checkout)" >&2
exit 3
