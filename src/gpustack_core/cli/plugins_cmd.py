"""``gpustack-core plugins``: what is installed, and whether it works.

The table is drawn by :mod:`._table` (rich's box without importing rich: it was a third of this
command's start-up).

:func:`list_plugins` does the work without Typer, so that ``main`` can run a plain
``gpustack-core plugins [--json] [--strict]`` without importing it (see ``cli/app.py``);
:func:`register` wraps it as the Typer command used for every other command line (help, errors).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ._common import make_host, print_json

if TYPE_CHECKING:
    import typer

__all__ = ["FLAGS", "list_plugins", "register"]

#: The options of ``plugins`` (all flags): option -> parameter of :func:`list_plugins`.
FLAGS: dict[str, str] = {"--json": "as_json", "--strict": "strict"}


def list_plugins(as_json: bool = False, strict: bool = False) -> int:
    """Print the plugins (a table, or JSON); the exit status: 1 when ``strict`` and one failed."""
    host = make_host()
    records = host.plugins()
    if as_json:
        print_json([r.to_dict() for r in records])
    else:
        from ._table import Cell, render_table, terminal_width, use_colour

        colours = {"ok": "green", "error": "red", "disabled": "yellow"}
        rows = [
            [
                Cell(r.area),
                Cell(r.name),
                Cell(r.distribution or "-"),
                Cell(r.version or "-"),
                Cell(r.status, colours[r.status]),
                Cell(r.error if r.error else ", ".join(r.provides)),
            ]
            for r in records
        ]
        headers = ("area", "name", "distribution", "version", "status", "provides / error")
        text = render_table(
            "gpustack-core plugins",
            headers,
            rows,
            width=terminal_width(sys.stdout),
            colour=use_colour(sys.stdout),
        )
        sys.stdout.write(text)
    failed = [r for r in records if r.status == "error"]
    if strict and failed:
        print(f"{len(failed)} plugin(s) failed: " + ", ".join(r.name for r in failed), file=sys.stderr)
        return 1
    return 0


def register(app: typer.Typer) -> None:
    """Add the ``plugins`` command."""
    import typer

    def plugins(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        strict: bool = typer.Option(False, "--strict", help="Exit with status 1 if any plugin failed."),
    ) -> None:
        """List plugins: area, name, distribution, version, status or error."""
        status = list_plugins(as_json=as_json, strict=strict)
        if status:
            raise typer.Exit(status)

    app.command("plugins")(plugins)
