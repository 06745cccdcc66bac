"""Builds the Typer application from the command modules.

A command module exposes ``register(app: typer.Typer) -> None``; add it to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import importlib

import typer

from ..__about__ import __version__

__all__ = ["COMMAND_MODULES", "build_app", "main"]

#: Modules (relative to this package) whose ``register(app)`` adds commands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    ".plugins_cmd",
    ".devices_cmd",
    ".download_cmd",
    ".estimate_cmd",
    ".schedule_cmd",
    ".engines_cmd",
    ".serve_cmd",
    ".worker_cmd",
    ".manage_cmd",
    ".account_cmd",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gpustack-core {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """A fresh Typer application with every command registered (no shared state between calls)."""
    app = typer.Typer(
        name="gpustack-core",
        help="Plugin-based GPU cluster manager for serving AI models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Plugin-based GPU cluster manager for serving AI models."""

    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name, __package__)
        module.register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()()
