"""``gpustack-core plugins``: what is installed, and whether it works."""

from __future__ import annotations

import typer

from ._common import console, make_host, print_json

__all__ = ["register"]


def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 if any plugin failed."),
) -> None:
    """List plugins: area, name, distribution, version, status or error."""
    host = make_host()
    records = host.plugins()
    if as_json:
        print_json([r.to_dict() for r in records])
    else:
        from rich.table import Table

        table = Table(title="gpustack-core plugins")
        for column in ("area", "name", "distribution", "version", "status", "provides / error"):
            table.add_column(column, overflow="fold")
        for r in records:
            style = {"ok": "green", "error": "red", "disabled": "yellow"}[r.status]
            detail = r.error if r.error else ", ".join(r.provides)
            table.add_row(
                r.area, r.name, r.distribution or "-", r.version or "-", f"[{style}]{r.status}[/]", detail
            )
        console().print(table)
    failed = [r for r in records if r.status == "error"]
    if strict and failed:
        console(stderr=True).print(f"{len(failed)} plugin(s) failed: " + ", ".join(r.name for r in failed))
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``plugins`` command."""
    app.command("plugins")(plugins)
