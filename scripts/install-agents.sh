#!/bin/sh
# Install the four real agent CLIs into a cache outside the clone, once.
# Reused when present: a second run only checks that each program starts.
#   ORCHESTREE_AGENTS_CACHE  where to install (default ~/.cache/orchestree-agents)
# Prints the folder to put first on PATH as its last line.
set -eu

CACHE="${ORCHESTREE_AGENTS_CACHE:-$HOME/.cache/orchestree-agents}"
NPM_PREFIX="$CACHE/npm"
AIDER_VENV="$CACHE/aider-venv"
BIN="$CACHE/bin"
NPM_PACKAGES="@anthropic-ai/claude-code @openai/codex @google/gemini-cli"
PYTHON="${PYTHON:-python3}"

mkdir -p "$NPM_PREFIX" "$BIN"

need_npm=0
for prog in claude codex gemini; do
    [ -x "$NPM_PREFIX/node_modules/.bin/$prog" ] || need_npm=1
done
if [ "$need_npm" = 1 ]; then
    echo "install-agents: npm install $NPM_PACKAGES into $NPM_PREFIX" >&2
    # shellcheck disable=SC2086
    npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error $NPM_PACKAGES >&2
fi

if [ ! -x "$AIDER_VENV/bin/aider" ]; then
    echo "install-agents: aider-chat into $AIDER_VENV" >&2
    "$PYTHON" -m venv "$AIDER_VENV"
    if ! "$AIDER_VENV/bin/pip" install -q aider-chat >"$CACHE/aider-install.log" 2>&1; then
        tail -n 20 "$CACHE/aider-install.log" >&2
        rm -rf "$AIDER_VENV"
        exit 1
    fi
fi

# One folder holding exactly the four programs, so PATH gains nothing else.
for prog in claude codex gemini; do
    ln -sf "$NPM_PREFIX/node_modules/.bin/$prog" "$BIN/$prog"
done
ln -sf "$AIDER_VENV/bin/aider" "$BIN/aider"

echo "install-agents: node $(node --version)" >&2
# Each program starts with this node and python; a scratch HOME keeps ours clean.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for prog in claude codex gemini aider; do
    if ! version=$(HOME="$scratch" "$BIN/$prog" --version 2>&1 </dev/null); then
        echo "install-agents: $prog --version failed: $version" >&2
        exit 1
    fi
    echo "install-agents: $prog $(printf '%s' "$version" | tail -n 1)" >&2
done
echo "$BIN"
