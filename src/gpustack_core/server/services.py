"""Objects the application shares across requests and controllers; they live on ``app.state.services``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
