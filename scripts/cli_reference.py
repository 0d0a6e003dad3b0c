"""Generate the README's command reference from the commands' own --help.

    python scripts/cli_reference.py           # rewrite the block in README.md
    python scripts/cli_reference.py --check   # exit 1 when README.md has drifted

tests/test_readme.py runs the check, so the README cannot drift from the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from orchestree.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- cli:begin -->", "<!-- cli:end -->"
WIDTH = 96


def _context(command: Any, name: str, parent: Any) -> Any:
    # Typer builds on click or on its own copy of it, by version: ask the command.
    return command.context_class(
        command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )


def _help(command: Any, path: list[str], parent: Any) -> str:
    return str(command.get_help(_context(command, path[-1], parent))).rstrip()


def reference() -> str:
    root: Any = typer.main.get_command(app)
    root_ctx = _context(root, "orchestree", None)
    parts = ["```", _help(root, ["orchestree"], None), "```"]
    for name in sorted(root.commands):
        command = root.commands[name]
        if hasattr(command, "commands"):
            group_ctx = _context(command, name, root_ctx)
            for sub in sorted(command.commands):
                text = _help(command.commands[sub], [name, sub], group_ctx)
                parts += [f"\n#### `orchestree {name} {sub}`\n", "```", text, "```"]
            continue
        text = _help(command, [name], root_ctx)
        parts += [f"\n#### `orchestree {name}`\n", "```", text, "```"]
    return "\n".join(parts)


def render(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{reference()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = README.read_text(encoding="utf-8")
    if BEGIN not in current or END not in current:
        print(f"{README} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 2
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("README.md's command reference is out of date: run "
                  "`python scripts/cli_reference.py`", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
