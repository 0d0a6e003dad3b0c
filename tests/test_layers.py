"""The house's rule: every import points down the README's layer list, and none loops.

The layers are read from the README's `layers` block (top layer first), so the list a
newcomer reads is the list this test holds the code to. Every import counts: at the
top of a module, inside a function (lazy), and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "orchestree"


def modules() -> dict[str, Path]:
    """Dotted name (without `orchestree.`) → file, for every module of the package."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or "orchestree"] = path
    return found


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The package module an absolute dotted import lands in, or None outside it."""
    if name != "orchestree" and not name.startswith("orchestree."):
        return None
    name = name.removeprefix("orchestree").removeprefix(".")
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or "orchestree"  # the package's own __init__


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules `module` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = ["orchestree", *package.split(".")] if package else ["orchestree"]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:  # a submodule by name, else what `base` defines
                full = f"{base}.{alias.name}"
                inner = full.removeprefix("orchestree.")
                names.append(full if inner in known else base)
        for name in names:
            target = _target(name, known)
            if target is not None and target != module:
                found.add(target)
    return found


def layers() -> list[tuple[str, list[str]]]:
    """The README's layers, top first: (name, module patterns)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", readme, re.S)
    assert block, "the README's Development section must hold a ```layers block"
    rows = []
    for line in block.group(1).splitlines():
        if line.strip():
            name, *patterns = line.split()
            rows.append((name, patterns))
    return rows


def layer_of(known: dict[str, Path]) -> dict[str, int]:
    """Module → its layer's height (0 is the ground floor)."""
    rows = layers()
    height: dict[str, int] = {}
    for index, (_, patterns) in enumerate(rows):
        for pattern in patterns:
            hits = [
                m for m in known
                if m == pattern or (pattern.endswith(".*") and m.startswith(pattern[:-1]))
            ]  # fmt: skip
            assert hits, f"the layer list names {pattern!r}, which is no module"
            for m in hits:
                assert m not in height, f"{m} is in two layers"
                height[m] = len(rows) - 1 - index
    return height


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_has_one_layer() -> None:
    known = modules()
    placed = layer_of(known)
    missing = sorted(set(known) - set(placed))
    assert not missing, f"add these modules to the README's layers block: {missing}"


def test_no_import_points_up() -> None:
    known = modules()
    height = layer_of(known)
    upward = sorted(
        f"{m} ({height[m]}) imports {t} ({height[t]})"
        for m, targets in graph().items()
        for t in targets
        if height[t] > height[m]
    )
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles = [c for c in _components(edges) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _components(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    """The walker is what the tests above trust: it must see every kind of import."""
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from orchestree.cli import app\n"
        "def f():\n    from orchestree import git\n    import orchestree.procs.sub\n"
        "from .b import thing\n"
        "from . import c\n"
        "from orchestree import __version__\n"
        "import json\n"
    )
    names = ["cli", "git", "procs", "merge", "merge.a", "merge.b", "merge.c"]
    known = {name: Path() for name in names}
    assert imports("merge.a", tmp_path / "a.py", known) == {
        "cli", "git", "procs", "merge.b", "merge.c", "orchestree"
    }  # fmt: skip
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in _components(edges) if len(c) > 1] == [["a", "b", "c"]]
