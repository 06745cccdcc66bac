"""Builds the Typer application from the command modules.

A command module exposes ``register(app: typer.Typer) -> None``; add it to ``COMMAND_MODULES`` and
its command names to ``COMMANDS``.

Start-up is kept short: ``--version`` and a plain ``plugins [--json] [--strict]`` answer without
importing Typer, and a command line that names a command registers (imports) only that command's
module; help and unknown names build the whole application.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from ..__about__ import __version__

if TYPE_CHECKING:
    import typer

__all__ = ["COMMANDS", "COMMAND_MODULES", "build_app", "main"]

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

#: Top-level command (or group) name -> the module in ``COMMAND_MODULES`` that registers it.
COMMANDS: dict[str, str] = {
    "plugins": ".plugins_cmd",
    "devices": ".devices_cmd",
    "download": ".download_cmd",
    "estimate": ".estimate_cmd",
    "schedule": ".schedule_cmd",
    "engines": ".engines_cmd",
    "serve": ".serve_cmd",
    "worker": ".worker_cmd",
    "manage": ".manage_cmd",
    "login": ".account_cmd",
    "logout": ".account_cmd",
    "keys": ".account_cmd",
    "users": ".account_cmd",
    "usage": ".account_cmd",
    "logs": ".account_cmd",
}


def _version_callback(value: bool) -> None:
    import typer

    if value:
        typer.echo(f"gpustack-core {__version__}")
        raise typer.Exit()


def build_app(command: str | None = None) -> typer.Typer:
    """A fresh Typer application (no shared state between calls).

    With ``command`` (a key of :data:`COMMANDS`) only that command is registered, for a command
    line that runs it; otherwise every command is.
    """
    import typer

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

    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for module_name in modules:
        module = importlib.import_module(module_name, __package__)
        module.register(app)
    if command in COMMANDS:  # a module may register several commands (account_cmd): keep the one run
        app.registered_commands = [c for c in app.registered_commands if c.name in (command, None)]
        app.registered_groups = [g for g in app.registered_groups if g.name in (command, None)]
    return app


def _command_named(argv: list[str]) -> str | None:
    """The command an argument list runs, when its first argument names one."""
    if argv and argv[0] in COMMANDS:
        return argv[0]
    return None


def _plain_plugins(argv: list[str]) -> dict[str, bool] | None:
    """The arguments of :func:`~.plugins_cmd.list_plugins` when ``argv`` is ``plugins`` with known
    flags, each at most once (``--help``, a typo, anything else: ``None``, and Typer answers)."""
    if not argv or argv[0] != "plugins":
        return None
    from .plugins_cmd import FLAGS

    flags = argv[1:]
    if len(set(flags)) != len(flags) or not set(flags) <= FLAGS.keys():
        return None
    return {parameter: option in flags for option, parameter in FLAGS.items()}


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        print(f"gpustack-core {__version__}")
        return
    plugins_args = _plain_plugins(argv)
    if plugins_args is not None:  # the same as the Typer command, without importing Typer
        from .plugins_cmd import list_plugins

        status = list_plugins(**plugins_args)
        if status:
            raise SystemExit(status)
        return
    build_app(_command_named(argv))()
