"""The gateway's view of the world: value types and the three protocols a host service implements.

The gateway never touches a database. A host (the reference server, or any other service that
mounts the gateway) hands it three objects:

- a :class:`RouteTable` that says which running instances serve a model name,
- a :class:`KeyAuthenticator` that turns an API key into a :class:`Principal`,
- a :class:`UsageSink` that stores one :class:`UsageRecord` per finished request.

Simple in-memory implementations live in :mod:`gpustack_core.gateway.memory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

__all__ = [
    "INFERENCE_SCOPE",
    "KeyAuthenticator",
    "ModelEntry",
    "Principal",
    "RouteTable",
    "Upstream",
    "UsageRecord",
    "UsageSink",
]

INFERENCE_SCOPE = "inference"
"""The scope an API key needs to call the OpenAI-compatible routes."""


@dataclass(frozen=True)
class Upstream:
    """One running engine instance that serves a model.

    ``base_url`` is the engine's root (``http://10.0.0.5:8080``); the gateway appends the path the
    client called (``/v1/chat/completions``). ``served_model_name`` is the name the engine knows the
    model by; when it differs from the public model name the gateway rewrites the ``model`` field.
    """

    instance_id: str
    base_url: str
    served_model_name: str
    deployment: str


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``GET /v1/models``: the public model name and OpenAI's ``owned_by``/``created``.

    ``category`` is the model's category (``llm``, ``embedding``, ``reranker``, ``image``,
    ``speech_to_text``, ``text_to_speech``); it is returned as an extra field.
    """

    id: str
    owned_by: str
    created: int
    category: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, the API key used, what it may do and which models it may call.

    ``allowed_models`` of ``None`` means every model; an admin may call every model and needs no scope.
    ``teams`` are the ids of the user's teams (their quotas and rate limits apply too).
    """

    user_id: str
    key_id: str | None
    scopes: frozenset[str]
    allowed_models: frozenset[str] | None
    is_admin: bool
    teams: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UsageRecord:
    """Token usage of requests by one user and key, for one model on one UTC day.

    The gateway emits one record per finished request (``requests=1``); a sink may aggregate them.
    """

    user_id: str
    key_id: str | None
    model: str
    day: date
    prompt_tokens: int
    completion_tokens: int
    requests: int


@runtime_checkable
class RouteTable(Protocol):
    """Where requests for a model name go. Called on every request: keep it cheap (in memory)."""

    def upstreams(self, model: str) -> Sequence[Upstream]:
        """The *running* instances that serve ``model`` (empty when none runs or the model is unknown)."""
        ...

    def models(self) -> Sequence[ModelEntry]:
        """Every model the gateway knows (deployed), running or not; ``/v1/models`` lists these."""
        ...

    def instance_states(self, model: str) -> Sequence[tuple[str, str]]:
        """``(instance id, state)`` of every instance of ``model``; used in 503 messages."""
        ...


@runtime_checkable
class KeyAuthenticator(Protocol):
    """Turns the bearer token of a request into a principal."""

    async def authenticate(self, token: str) -> Principal | None:
        """The principal owning ``token``, or ``None`` when the token is unknown, revoked or expired."""
        ...


@runtime_checkable
class UsageSink(Protocol):
    """Stores token usage.

    ``record`` is awaited before the last byte of a response is sent, so usage is visible once a
    client has its full response. Keep it fast: a database-backed sink should enqueue and batch.
    """

    async def record(self, usage: UsageRecord) -> None:
        """Store (or add to an aggregate) one usage record."""
        ...
