"""`visible.py`: agent text shown as text, never as terminal commands or Rich markup."""

from __future__ import annotations

import io
import re

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from orchestree.visible import visible

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    assert CONTROL.search(visible(text)) is None
    kept = visible(text, keep="\n\t")
    assert CONTROL.search(kept.replace("\n", "").replace("\t", "")) is None
    assert kept.count("\n") == text.count("\n")


@given(st.text(alphabet=st.characters(blacklist_categories=["Cc"])))
def test_text_without_controls_is_left_as_it_is(text: str) -> None:
    assert visible(text) == text


def test_escapes_are_readable() -> None:
    assert visible("a\x1b[2Jb\rc\x9bd\x00") == "a\\x1b[2Jb\\rc\\x9bd\\x00"
    assert visible("line 1\nline 2\tend", keep="\n\t") == "line 1\nline 2\tend"
    assert visible("line 1\nline 2") == "line 1\\nline 2"


@given(st.text())
def test_rich_prints_agent_text_exactly_as_visible_says(text: str) -> None:
    out = io.StringIO()
    Console(file=out, width=10_000, color_system=None, highlight=False).print(
        Text(visible(text)), end="", soft_wrap=True
    )
    assert out.getvalue() == visible(text)


def test_rich_markup_is_not_interpreted() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system="truecolor", highlight=False)
    console.print(Text(visible("[link=http://x]click[/link] [bold red]alarm")))
    assert out.getvalue() == "[link=http://x]click[/link] [bold red]alarm\n"
