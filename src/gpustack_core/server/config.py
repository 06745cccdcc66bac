"""Server configuration: one frozen object passed to :func:`create_app`; nothing is read from globals."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_DATA_DIR_ENV", "ServerConfig", "default_data_dir"]

DEFAULT_DATA_DIR_ENV = "GPUSTACK_CORE_DATA_DIR"


def default_data_dir() -> Path:
    """``$GPUSTACK_CORE_DATA_DIR``, else ``$XDG_DATA_HOME/gpustack-core``, else
    ``~/.local/share/gpustack-core``."""
    if os.environ.get(DEFAULT_DATA_DIR_ENV):
        return Path(os.environ[DEFAULT_DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "gpustack-core"


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; defaults make ``gpustack-core serve`` work on a fresh machine.

    Attributes:
        data_dir: SQLite database, ``initial_admin_password``, ``token``, model cache and the
            embedded worker's state live here.
        database_url: SQLAlchemy URL; ``None`` means SQLite at ``<data_dir>/gpustack.db``.
            PostgreSQL: ``postgresql+psycopg://user@host/db``; MySQL/MariaDB: ``mysql+pymysql://...``.
        embedded_worker: run a worker inside the server process (``--no-worker`` turns it off).
        worker_name: name of the embedded worker (default: the host name).
        heartbeat_timeout_s: a worker silent this long is unreachable and its instances reschedule.
        reconcile_interval_s: how often the controllers run.
        restart_backoff_s / restart_backoff_max_s: delay before an errored instance is retried,
            doubling per restart up to the maximum.
        restart_stable_s: an instance running this long has its restart count (and so its next
            backoff) set back to zero.
        session_ttl_s: lifetime of a login session token.
        login_max_failures / login_window_s: failed-login rate limit per (user, client address).
        mount_gateway: mount the OpenAI-compatible gateway at ``/v1`` when it is installed.
        keep_engines_on_exit: the embedded worker leaves engines running when the server stops, and
            the next start adopts them (``False``: stop them with the server).
        auth_cache_ttl_s: how long the gateway trusts a checked API key without asking the
            database again (revocations through this server apply at once; 0: no cache).
        usage_flush_interval_s: the gateway's usage counts are written in batches this often
            (0: each request's usage is written before it ends).
        gateway_max_body_bytes: larger request bodies get 413 from the gateway.
        api_max_body_bytes: larger management API request bodies get 413 (nothing past the limit
            is read).
        request_body_timeout_s: a request whose body has not fully arrived this many seconds
            after it started gets 408 (0: no deadline).
        forwarded_allow_ips: addresses of reverse proxies whose ``X-Forwarded-For`` and
            ``X-Forwarded-Proto`` are believed (comma separated, ``*`` for all); empty: none,
            the client address is the socket's peer (the login rate limit keys on it).
        gateway_upstream_timeout_s: the longest the gateway waits for an engine's next bytes
            (its answer's head, or the next chunk of a stream) before 504 or a stream error.
        enforce_limits: the gateway enforces quotas and rate limits (``--no-limits`` turns it off).
        default_max_tokens: the completion tokens reserved against token limits for a request
            without ``max_tokens``.
        oidc_issuer / oidc_client_id / oidc_client_secret: single sign-on through this OpenID
            provider (none: no SSO); ``oidc_scopes``, ``oidc_username_claim`` and
            ``oidc_teams_claim`` (the claim whose values name the user's teams) tune it;
            ``oidc_redirect_url`` is the callback URL registered at the provider (default: derived
            from the login request's URL).
        local_login: password login allowed (``--no-local-login``: SSO only; admin API keys still work).
        cold_start_hold_timeout_s: the longest a request waits for a deployment scaled to zero to start.
        scale_to_zero_check_interval_s: how often idle deployments with a scale-to-zero policy are stopped.
        gateway_workers: processes serving the gateway (``/v1``) on the server's port; above 1,
            ``gateway_workers - 1`` gateway-only processes share the port with the server through
            ``SO_REUSEPORT`` (Linux; see :mod:`gpustack_core.server.gateway_workers`).
    """

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    embedded_worker: bool = True
    worker_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    heartbeat_timeout_s: float = 30.0
    reconcile_interval_s: float = 1.0
    restart_backoff_s: float = 2.0
    restart_backoff_max_s: float = 300.0
    restart_stable_s: float = 600.0
    session_ttl_s: float = 24 * 3600.0
    login_max_failures: int = 5
    login_window_s: float = 300.0
    mount_gateway: bool = True
    keep_engines_on_exit: bool = True
    worker_poll_interval_s: float = 1.0
    worker_heartbeat_interval_s: float = 5.0
    auth_cache_ttl_s: float = 5.0
    usage_flush_interval_s: float = 0.5
    gateway_max_body_bytes: int = 10 * 1024 * 1024
    gateway_upstream_timeout_s: float = 600.0
    enforce_limits: bool = True
    default_max_tokens: int = 4096
    oidc_issuer: str | None = None
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: str = "openid profile email"
    oidc_username_claim: str = "preferred_username"
    oidc_teams_claim: str = "groups"
    oidc_redirect_url: str | None = None
    local_login: bool = True
    cold_start_hold_timeout_s: float = 120.0
    scale_to_zero_check_interval_s: float = 1.0
    api_max_body_bytes: int = 1024 * 1024
    request_body_timeout_s: float = 60.0
    forwarded_allow_ips: str = ""
    gateway_workers: int = 1

    @property
    def resolved_database_url(self) -> str:
        """The database URL, SQLite in the data directory when none was given."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(self.data_dir) / 'gpustack.db').resolve()}"
