"""Which language a file is in and whether it is a test, from its path alone."""

from __future__ import annotations

import re

LANGUAGES: dict[str, str] = {
    ".py": "Python", ".pyi": "Python", ".pyx": "Python",
    ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript", ".jsx": "JavaScript",
    ".ts": "TypeScript", ".tsx": "TypeScript", ".mts": "TypeScript",
    ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin", ".scala": "Scala",
    ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cxx": "C++", ".hpp": "C++",
    ".cs": "C#", ".rb": "Ruby", ".php": "PHP", ".swift": "Swift", ".m": "Objective-C",
    ".lua": "Lua", ".r": "R", ".jl": "Julia", ".ex": "Elixir", ".exs": "Elixir",
    ".erl": "Erlang", ".hs": "Haskell", ".ml": "OCaml", ".clj": "Clojure", ".dart": "Dart",
    ".zig": "Zig", ".vue": "Vue", ".svelte": "Svelte",
    ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell", ".ps1": "PowerShell",
    ".sql": "SQL", ".html": "HTML", ".htm": "HTML", ".css": "CSS", ".scss": "SCSS",
    ".md": "Markdown", ".rst": "reStructuredText", ".txt": "Text", ".adoc": "AsciiDoc",
    ".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML", ".xml": "XML",
    ".ini": "INI", ".cfg": "INI", ".proto": "Protocol Buffers", ".tf": "Terraform",
}  # fmt: skip
FILENAMES = {"Makefile": "Makefile", "Dockerfile": "Dockerfile", "CMakeLists.txt": "CMake"}
# Languages whose files are expected to have tests (shell, markup and data are not).
TESTABLE = frozenset(
    {
        "Python", "JavaScript", "TypeScript", "Go", "Rust", "Java", "Kotlin", "Scala", "C",
        "C++", "C#", "Ruby", "PHP", "Swift", "Objective-C", "Lua", "R", "Julia", "Elixir",
        "Erlang", "Haskell", "OCaml", "Clojure", "Dart", "Zig", "Vue", "Svelte",
    }
)  # fmt: skip
TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs", "testing"})
_TEST_NAME = re.compile(r"^(test_.*|.*_test|.*_tests|.*\.test|.*\.spec|.*_spec|.*Tests?|conftest)$")
_TEST_AFFIX = re.compile(r"^test_|(_tests?|\.test|\.spec|_spec|Tests?)$")
# Modules that are plumbing, not behaviour: they do not need a test of their own name.
BOILERPLATE = frozenset(
    {"__init__", "__main__", "conftest", "setup", "index", "main", "mod", "lib", "version"}
)
# Folders whose code is not expected to have tests.
UNTESTED_DIRS = frozenset({"docs", "doc", "examples", "example", "samples", "migrations"})


def _name_stem_suffix(path: str) -> tuple[str, str, str]:
    # String operations, not PurePosixPath: this runs for every file of the repository.
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return (name, name[:dot], name[dot:].lower()) if dot > 0 else (name, name, "")


def folder_of(path: str) -> str:
    return path.rpartition("/")[0] or "."


def folders_above(path: str) -> list[str]:
    """Every folder holding `path`, nearest first, ending with the root `.`."""
    folders = []
    while "/" in path:
        path = path.rpartition("/")[0]
        folders.append(path)
    folders.append(".")
    return folders


def language(path: str) -> str:
    name, _, suffix = _name_stem_suffix(path)
    return FILENAMES.get(name) or LANGUAGES.get(suffix, "Other")


def is_test_file(path: str) -> bool:
    if language(path) not in TESTABLE:
        return False
    stem = _name_stem_suffix(path)[1]
    return bool(_TEST_NAME.match(stem)) or any(p in TEST_DIRS for p in path.split("/")[:-1])


def _norm(name: str) -> str:
    return re.sub(r"[-.]", "_", name.lower())


def tested_names(test_paths: list[str]) -> set[str]:
    """Every module name the test files mention: `tests/test_probes_git.py` gives
    `probes`, `git` and `probes_git` (each run of `_`-separated parts of its name)."""
    names: set[str] = set()
    for path in test_paths:
        stem = _name_stem_suffix(path)[1]
        parts = [p for p in _norm(_TEST_AFFIX.sub("", stem)).split("_") if p]
        for i in range(len(parts)):
            for j in range(i + 1, min(len(parts), i + 6) + 1):
                names.add("_".join(parts[i:j]))
    return names


def covered(names: set[str], module_path: str) -> bool:
    """Whether a test file's name mentions this source file's module name."""
    return _norm(_name_stem_suffix(module_path)[1]) in names


def module_name(path: str) -> str:
    """`pkg/Git.py` → `git`."""
    return _name_stem_suffix(path)[1].lower()
