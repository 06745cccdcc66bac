"""``gpustack-core serve``: the reference server with an embedded worker."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from pathlib import Path
from typing import Annotated

import anyio
import typer

from gpustack_core.cli._common import make_host

__all__ = ["register"]


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Database, secrets, models, worker state (default: ~/.local/share/gpustack-core).",
        ),
    ] = None,
    database_url: str = typer.Option(
        None,
        "--database-url",
        envvar="GPUSTACK_CORE_DATABASE_URL",
        help="SQLAlchemy URL: postgresql+psycopg://... or mysql+pymysql://... (default: SQLite).",
    ),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not run a worker inside the server."),
    worker_name: str = typer.Option(
        None, "--worker-name", help="Name of the embedded worker (default: host name)."
    ),
    heartbeat_timeout: float = typer.Option(
        30.0, "--heartbeat-timeout", help="Seconds before a silent worker's instances move."
    ),
    keep_engines: bool = typer.Option(
        False,
        "--keep-engines",
        help="Leave engines running when the server stops, for the next start to adopt "
        "(default: Ctrl-C / SIGTERM stops them).",
    ),
    max_body: int = typer.Option(
        10 * 1024 * 1024, "--max-body-bytes", help="Gateway: larger request bodies get 413.", min=1
    ),
    upstream_timeout: float = typer.Option(
        600.0,
        "--upstream-timeout",
        help="Gateway: seconds to wait for an engine's next bytes before 504 (or a stream error).",
        min=0.001,
    ),
    no_limits: bool = typer.Option(
        False, "--no-limits", help="Gateway: do not enforce quotas and rate limits (no 429s, no headers)."
    ),
    default_max_tokens: int = typer.Option(
        4096,
        "--default-max-tokens",
        help="Gateway: completion tokens reserved against token limits for a request without max_tokens.",
        min=1,
    ),
    oidc_issuer: str = typer.Option(None, "--oidc-issuer", help="SSO: the OpenID provider's issuer URL."),
    oidc_client_id: str = typer.Option("", "--oidc-client-id", help="SSO: this server's client id."),
    oidc_client_secret: str = typer.Option(
        "", "--oidc-client-secret", envvar="GPUSTACK_CORE_OIDC_CLIENT_SECRET", help="SSO: the client secret."
    ),
    oidc_scopes: str = typer.Option("openid profile email", "--oidc-scopes", help="SSO: scopes asked for."),
    oidc_username_claim: str = typer.Option(
        "preferred_username", "--oidc-username-claim", help="SSO: the claim used as the username."
    ),
    oidc_teams_claim: str = typer.Option(
        "groups", "--oidc-teams-claim", help="SSO: the claim whose values name the user's teams."
    ),
    oidc_redirect_url: str = typer.Option(
        None, "--oidc-redirect-url", help="SSO: the callback URL registered at the provider."
    ),
    no_local_login: bool = typer.Option(False, "--no-local-login", help="Refuse password logins (SSO only)."),
    cold_start_hold: float = typer.Option(
        120.0,
        "--cold-start-hold-timeout",
        help="Seconds a request waits for a scaled-to-zero model.",
        min=0.001,
    ),
    api_max_body: int = typer.Option(
        1024 * 1024, "--api-max-body-bytes", help="Management API: larger request bodies get 413.", min=1
    ),
    body_timeout: float = typer.Option(
        60.0,
        "--request-body-timeout",
        help="Seconds a request's whole body may take to arrive before 408 (0: no limit).",
        min=0.0,
    ),
    forwarded_allow_ips: str = typer.Option(
        "",
        "--forwarded-allow-ips",
        help="Reverse proxies whose X-Forwarded-For is believed (comma separated, '*' for all); "
        "default: none, the client address is the connection's.",
    ),
    gateway_workers: int = typer.Option(
        1,
        "--gateway-workers",
        help="Processes serving the OpenAI gateway (/v1) on the port; above 1, gateway-only "
        "processes share it with the server through SO_REUSEPORT (Linux only).",
        min=1,
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the server (REST API, controllers, OpenAI gateway) with an embedded worker."""
    if gateway_workers > 1 and not (hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")):
        raise typer.BadParameter(
            f"above 1 needs SO_REUSEPORT as Linux has it, which this platform ({sys.platform}) lacks; use 1",
            param_hint="--gateway-workers",
        )
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level.lower() != "debug":
        # one line per heartbeat/poll request drowns what matters
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per alembic plugin
    # imported here: the server stack is heavy, and every other command should start fast
    from gpustack_core.server.config import ServerConfig, default_data_dir

    config = ServerConfig(
        data_dir=(data_dir or default_data_dir()).expanduser().resolve(),
        database_url=database_url,
        embedded_worker=not no_worker,
        worker_name=worker_name,
        host=host,
        port=port,
        heartbeat_timeout_s=heartbeat_timeout,
        keep_engines_on_exit=keep_engines,
        gateway_max_body_bytes=max_body,
        gateway_upstream_timeout_s=upstream_timeout,
        enforce_limits=not no_limits,
        default_max_tokens=default_max_tokens,
        oidc_issuer=oidc_issuer,
        oidc_client_id=oidc_client_id,
        oidc_client_secret=oidc_client_secret,
        oidc_scopes=oidc_scopes,
        oidc_username_claim=oidc_username_claim,
        oidc_teams_claim=oidc_teams_claim,
        oidc_redirect_url=oidc_redirect_url,
        local_login=not no_local_login,
        cold_start_hold_timeout_s=cold_start_hold,
        api_max_body_bytes=api_max_body,
        request_body_timeout_s=body_timeout,
        forwarded_allow_ips=forwarded_allow_ips,
        gateway_workers=gateway_workers,
    )
    from gpustack_core._platform import event_loop_options
    from gpustack_core.server.gateway_workers import freeze_startup_objects
    from gpustack_core.server.serving import serve as run

    def started(banner: str) -> None:
        typer.echo(banner)
        freeze_startup_objects()

    # uvicorn re-raises the Ctrl-C it handled once the server (and its worker) has stopped
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(
            lambda: run(config, host=make_host(), log_level=log_level.lower(), on_started=started),
            backend_options=event_loop_options(),
        )
    if no_worker:
        typer.echo("server stopped")
    elif keep_engines:
        typer.echo("server stopped; engines keep running (--keep-engines): the next start adopts them")
    else:
        typer.echo("server stopped; its engines were stopped (--keep-engines leaves them running)")


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command."""
    app.command("serve")(serve)
