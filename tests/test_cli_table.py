"""The plain table ``gpustack-core plugins`` draws without rich: rich's heavy-head box, folding to
a terminal's width, colour only where asked."""

from __future__ import annotations

import io

import pytest

from gpustack_core.cli._table import Cell, render_table, use_colour

HEADERS = ("area", "name", "provides / error")
ROWS = [
    [Cell("accelerators"), Cell("cuda"), Cell("cuda")],
    [Cell("sources"), Cell("broken", "red"), Cell("could not import module foo: No module named 'bar_baz'")],
]


def test_the_table_has_rich_s_box_and_every_cell() -> None:
    lines = render_table("plugins", HEADERS, ROWS).splitlines()
    assert lines[0].strip() == "plugins"
    assert lines[1].startswith("┏━")
    assert lines[1].endswith("┓")
    assert lines[2] == "┃ area         ┃ name   ┃ provides / error" + " " * 39 + "┃"
    assert lines[3].startswith("┡━")
    assert "╇" in lines[3]
    assert lines[4] == "│ accelerators │ cuda   │ cuda" + " " * 51 + "│"
    assert "could not import module foo: No module named 'bar_baz'" in lines[5]
    assert lines[6].startswith("└─")
    assert lines[6].endswith("┘")
    assert len({len(line) for line in lines[1:]}) == 1  # every row as wide as the box
    assert "\x1b[" not in "".join(lines)


def test_a_narrow_terminal_folds_the_widest_cells_and_keeps_every_character() -> None:
    text = render_table("plugins", HEADERS, ROWS, width=40)
    lines = text.splitlines()[1:]
    assert max(len(line) for line in lines) <= 40
    folded = "".join(line.split("│")[3].strip() for line in lines if line.startswith("│"))
    assert folded.replace(
        " ", ""
    ) == "cuda" + "could not import module foo: No module named 'bar_baz'".replace(" ", "")


def test_colour_only_when_asked_and_only_on_coloured_cells() -> None:
    text = render_table("plugins", HEADERS, ROWS, colour=True)
    assert "\x1b[31mbroken\x1b[0m" in text
    assert "\x1b[1marea\x1b[0m" in text  # bold header
    assert "\x1b[32m" not in text  # no cell asked for green


def test_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(Tty()) is True
    assert use_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colour(Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert use_colour(Tty()) is False


def test_a_row_with_the_wrong_number_of_cells_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        render_table("plugins", HEADERS, [[Cell("a"), Cell("b")]])
