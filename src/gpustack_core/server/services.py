"""Objects the application shares across requests and controllers; they live on ``app.state.services``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gpustack_core.plugins import PluginHost

from .config import ServerConfig
from .security import LoginRateLimiter, PasswordHashing
from .store import Store

__all__ = ["Services"]


@dataclass
class Services:
    """Configuration, store, password hashing, login limiter, plugin host, worker-token hash."""

    config: ServerConfig
    store: Store
    host: PluginHost
    hashing: PasswordHashing = field(default_factory=PasswordHashing)
    limiter: LoginRateLimiter = field(default_factory=LoginRateLimiter)
    worker_token_hash: str | None = None
    worker_token: str | None = None
    #: called (in a worker thread) after an instance entered or left ``running``
    on_routes_changed: Callable[[], None] | None = None
    #: called (in the event loop) after a key was revoked or a user changed or deleted
    on_credentials_changed: Callable[[], None] | None = None
    #: writes the gateway's pending usage counts (the usage API awaits it before reading)
    flush_usage: Callable[[], Awaitable[None]] | None = None
    #: called (in a worker thread) after teams, model access, limits or fallbacks changed
    on_governance_changed: Callable[[], None] | None = None
    #: the OpenID Connect client (:class:`gpustack_core.server.sso.OIDCClient`) when SSO is configured
    sso: Any = None

    def credentials_changed(self) -> None:
        """Tell the gateway's key cache that a key or user changed."""
        if self.on_credentials_changed is not None:
            self.on_credentials_changed()
