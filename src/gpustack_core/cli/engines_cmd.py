"""``gpustack-core engines``: engine plugins, what they serve, and their installed versions."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from gpustack_core.contracts import Engine
from gpustack_core.engines import default_engine_options
from gpustack_core.errors import GPUStackError
from gpustack_core.plugins import PluginHost
from gpustack_core.types import EngineInstallation, EngineOptions

from ._common import console, make_host, print_json

__all__ = ["register"]

_DIR_HELP = "Engines directory (default: $GPUSTACK_CORE_ENGINES_DIR or ~/.cache/gpustack-core/engines)."


def _options(engines_dir: str | None, wheelhouse: str | None = None, offline: bool = False) -> EngineOptions:
    options = default_engine_options(wheelhouse=wheelhouse, offline=offline)
    if engines_dir:
        options = options.model_copy(update={"engines_dir": engines_dir})
    return options


def _installed(host: PluginHost, engine: Engine, options: EngineOptions) -> list[EngineInstallation]:
    with host.guard("engines", engine.name, "installed_versions"):
        return list(engine.installed_versions(options))


def _describe(host: PluginHost, engine: Engine, options: EngineOptions) -> dict[str, Any]:
    record = host.owner("engines", engine.name)
    caps = engine.capabilities()
    return {
        "name": engine.name,
        "distribution": record.distribution,
        "version": record.version,
        "default_version": engine.default_version(),
        "capabilities": caps.model_dump(mode="json"),
        "installed": [i.model_dump(mode="json") for i in _installed(host, engine, options)],
    }


def _fail(message: str) -> typer.Exit:
    console(stderr=True).print(f"[red]error:[/] {message}")
    return typer.Exit(1)


def list_engines(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    engines_dir: str | None = typer.Option(None, "--engines-dir", help=_DIR_HELP),
) -> None:
    """Engine plugins with their capabilities and installed versions."""
    host = make_host()
    options = _options(engines_dir)
    rows = [_describe(host, engine, options) for engine in host.engines()]
    if as_json:
        print_json({"engines_dir": options.engines_dir, "engines": rows})
        return
    table = Table(title=f"engines (versions under {options.engines_dir})")
    for column in ("engine", "distribution", "formats", "categories", "vendors", "default", "installed"):
        table.add_column(column, overflow="fold")
    for row in rows:
        caps = row["capabilities"]
        installed = ", ".join(f"{i['version']} ({i['origin']})" for i in row["installed"]) or "-"
        table.add_row(
            row["name"],
            f"{row['distribution'] or '-'} {row['version'] or ''}".strip(),
            ", ".join(caps["formats"]),
            ", ".join(caps["categories"]),
            ", ".join(caps["vendors"]),
            row["default_version"],
            installed,
        )
    console().print(table)


def install(
    engine_name: str = typer.Argument(..., help="Engine plugin name, e.g. llama.cpp."),
    version: str | None = typer.Argument(None, help="Version to install (default: the plugin's default)."),
    engines_dir: str | None = typer.Option(None, "--engines-dir", help=_DIR_HELP),
    wheelhouse: str | None = typer.Option(
        None, "--wheelhouse", help="Install offline from this wheel directory."
    ),
) -> None:
    """Install one version of an engine into its own environment (side by side with others)."""
    host = make_host()
    options = _options(engines_dir, wheelhouse, offline=wheelhouse is not None)
    try:
        engine = host.engine(engine_name)
        wanted = version or engine.default_version()
        console(stderr=True).print(f"installing {engine.name} {wanted} under {options.engines_dir} ...")
        with host.guard("engines", engine.name, "install"):
            installation = engine.install(wanted, options)
    except GPUStackError as exc:
        raise _fail(str(exc)) from exc
    console().print(f"installed {installation.engine} {installation.version}: {installation.executable}")


def remove(
    engine_name: str = typer.Argument(..., help="Engine plugin name."),
    version: str = typer.Argument(..., help="Installed version to remove."),
    engines_dir: str | None = typer.Option(None, "--engines-dir", help=_DIR_HELP),
) -> None:
    """Remove an installed version (versions found on the system are refused)."""
    host = make_host()
    options = _options(engines_dir)
    try:
        engine = host.engine(engine_name)
        matches = [i for i in _installed(host, engine, options) if i.version == version]
        if not matches:
            have = ", ".join(i.version for i in _installed(host, engine, options)) or "none"
            raise _fail(f"{engine.name} {version} is not installed (installed: {have})")
        with host.guard("engines", engine.name, "remove"):
            engine.remove(matches[-1], options)
    except GPUStackError as exc:
        raise _fail(str(exc)) from exc
    console().print(f"removed {engine_name} {version}")


def register(app: typer.Typer) -> None:
    """Add the ``engines`` command group (``engines``, ``engines install``, ``engines remove``)."""
    group = typer.Typer(help="Engine plugins and their installed versions.", no_args_is_help=False)
    group.callback(invoke_without_command=True)(_group_callback)
    group.command("list")(list_engines)
    group.command("install")(install)
    group.command("remove")(remove)
    app.add_typer(group, name="engines")


def _group_callback(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    engines_dir: str | None = typer.Option(None, "--engines-dir", help=_DIR_HELP),
) -> None:
    """Engine plugins with their capabilities and installed versions (same as ``engines list``)."""
    if ctx.invoked_subcommand is None:
        list_engines(as_json=as_json, engines_dir=engines_dir)
