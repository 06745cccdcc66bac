"""A plain-text table in rich's default box (heavy head), for commands that must start fast.

``rich`` costs about as much to import as the rest of ``gpustack-core plugins`` together; this
draws the same box with the standard library only. A table that does not fit a terminal folds
its widest cells (wrapped at spaces, long words cut, as rich's ``overflow="fold"``); written to a
pipe or a file it never wraps.
Colour is used only on a terminal, and never with ``NO_COLOR`` set or ``TERM=dumb``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Cell", "render_table", "terminal_width", "use_colour"]

#: ANSI foreground colours a cell may ask for.
_COLOURS = {"green": "32", "red": "31", "yellow": "33"}


@dataclass(frozen=True)
class Cell:
    """A cell's text and, optionally, its colour on a terminal (``green``, ``red``, ``yellow``)."""

    text: str
    colour: str | None = None


def use_colour(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that should get colour (not with ``NO_COLOR``/``TERM=dumb``)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def _fit(widths: list[int], limit: int) -> list[int]:
    """Shrink the widest columns, one character at a time, until the table is ``limit`` wide."""
    widths = list(widths)
    overhead = 3 * len(widths) + 1  # "│ " before each cell, " " after it, the closing "│"
    while sum(widths) + overhead > limit and max(widths) > 1:
        widths[widths.index(max(widths))] -= 1
    return widths


def _fold(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters: wrapped at spaces, a longer word cut
    (at least one line)."""
    if len(text) <= width:
        return [text]
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def render_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    width: int | None = None,
    colour: bool = False,
) -> str:
    """The table as text (ending with a newline): ``title`` centred above, a bold header on a
    terminal, cells padded by one space. ``width`` (columns of a terminal) folds cells to fit;
    ``None`` never folds."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns")
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell.text))
    if width is not None:
        widths = _fit(widths, width)

    def line(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + right

    def paint(text: str, code: str | None) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text

    def cells(values: Sequence[Cell], bar: str, header: bool) -> list[str]:
        folded = [_fold(c.text, w) for c, w in zip(values, widths, strict=True)]
        out = []
        for n in range(max(len(f) for f in folded)):
            parts = []
            for cell, lines, w in zip(values, folded, widths, strict=True):
                text = lines[n] if n < len(lines) else ""
                code = "1" if header else _COLOURS.get(cell.colour or "")
                parts.append(" " + paint(text, code) + " " * (w - len(text) + 1))
            out.append(bar + bar.join(parts) + bar)
        return out

    total = sum(widths) + 3 * len(widths) + 1
    out = [title.center(total).rstrip() if len(title) < total else title]
    out.append(line("┏", "━", "┳", "┓"))
    out += cells([Cell(h) for h in headers], "┃", header=True)
    out.append(line("┡", "━", "╇", "┩"))
    for row in rows:
        out += cells(row, "│", header=False)
    out.append(line("└", "─", "┴", "┘"))
    return "\n".join(out) + "\n"


def terminal_width(stream: TextIO) -> int | None:
    """The terminal's columns for ``stream``, or ``None`` when it is not a terminal."""
    return shutil.get_terminal_size().columns if stream.isatty() else None
