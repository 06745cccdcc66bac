"""``gpustack-core worker``: join a server and run the instances it assigns."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import anyio
import typer

from gpustack_core.cli._common import make_host

__all__ = ["register"]


def _labels(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"label {value!r} must look like key=value")
        labels[key] = text
    return labels


def worker(
    server_url: str = typer.Option(
        ..., "--server-url", envvar="GPUSTACK_CORE_SERVER_URL", help="e.g. http://10.0.0.1:8080"
    ),
    token: str = typer.Option(
        ..., "--token", envvar="GPUSTACK_CORE_TOKEN", help="The server's <data-dir>/token."
    ),
    name: str = typer.Option(None, "--name", help="Worker name (default: host name)."),
    address: str = typer.Option(
        "127.0.0.1", "--address", help="Address the server reaches this worker's engines at."
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Worker state, logs, model cache (default: <data dir>/worker)."),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="key=value, repeatable.")] = None,
    keep_engines: bool = typer.Option(
        False,
        "--keep-engines",
        help="Leave engines running when the worker exits, for the next start to adopt "
        "(default: Ctrl-C / SIGTERM stops them).",
    ),
    api_port: int = typer.Option(
        10150,
        "--api-port",
        min=0,
        max=65535,
        help="Port of this worker's HTTP API, which the server calls for engine logs (0: any free port).",
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Register with a server, heartbeat, and run assigned instances until interrupted."""
    from gpustack_core.server.config import default_data_dir
    from gpustack_core.worker.agent import WorkerAgent, WorkerConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.lower() != "debug":
        # one line per heartbeat/poll request drowns what matters
        logging.getLogger("httpx").setLevel(logging.WARNING)
    config = WorkerConfig(
        server_url=server_url,
        token=token,
        name=name,
        address=address,
        data_dir=(data_dir or default_data_dir() / "worker").expanduser().resolve(),
        labels=_labels(label or []),
        keep_engines_on_exit=keep_engines,
        api_port=api_port,
    )
    agent = WorkerAgent(config, make_host())
    typer.echo(f"worker {agent.name} joining {server_url} (state in {config.data_dir})")

    async def run_until_signalled() -> None:
        async with anyio.create_task_group() as group:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        typer.echo(f"{signal.Signals(signum).name}: stopping the worker")
                        group.cancel_scope.cancel()
                        return

            group.start_soon(on_signal)
            await agent.run()

    anyio.run(run_until_signalled)
    typer.echo(
        "worker stopped; "
        + (
            "engines keep running (--keep-engines): the next start adopts them"
            if keep_engines
            else "its engines were stopped (--keep-engines leaves them running)"
        )
    )


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command."""
    app.command("worker")(worker)
