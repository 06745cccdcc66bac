"""In-memory implementations of the gateway protocols, for embedding the gateway and for tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from .protocols import ModelEntry, Principal, Upstream, UsageRecord

__all__ = ["InMemoryUsageSink", "StaticKeyAuthenticator", "StaticRouteTable"]

RUNNING = "running"


class StaticRouteTable:
    """A route table held in memory and changed by method calls.

    Each model has a :class:`ModelEntry` and any number of instances, each with a state; only
    instances in state ``running`` receive requests. Safe to mutate between requests from the
    gateway's event loop (no locking: reads never see a half-applied change).
    """

    def __init__(self, models: Iterable[ModelEntry] = ()) -> None:
        """Start with ``models`` and no instances."""
        self._models: dict[str, ModelEntry] = {m.id: m for m in models}
        self._instances: dict[str, dict[str, tuple[Upstream, str]]] = {}
        self._running: dict[str, tuple[Upstream, ...]] = {}

    def add_model(self, entry: ModelEntry) -> None:
        """Add or replace a model entry."""
        self._models[entry.id] = entry

    def remove_model(self, model: str) -> None:
        """Forget a model and all of its instances."""
        self._models.pop(model, None)
        self._instances.pop(model, None)
        self._running.pop(model, None)

    def set_instance(self, model: str, upstream: Upstream, state: str = RUNNING) -> None:
        """Add an instance of ``model`` or change its state (the model must have been added)."""
        if model not in self._models:
            raise KeyError(f"unknown model {model!r}: call add_model() before adding its instances")
        self._instances.setdefault(model, {})[upstream.instance_id] = (upstream, state)
        self._refresh(model)

    def remove_instance(self, model: str, instance_id: str) -> None:
        """Remove one instance of ``model`` (no error when it is not there)."""
        self._instances.get(model, {}).pop(instance_id, None)
        self._refresh(model)

    def _refresh(self, model: str) -> None:
        instances = self._instances.get(model, {})
        self._running[model] = tuple(u for u, state in instances.values() if state == RUNNING)

    def upstreams(self, model: str) -> Sequence[Upstream]:
        """The running instances of ``model``."""
        return self._running.get(model, ())

    def models(self) -> Sequence[ModelEntry]:
        """Every model added, sorted by name."""
        return [self._models[k] for k in sorted(self._models)]

    def instance_states(self, model: str) -> Sequence[tuple[str, str]]:
        """``(instance id, state)`` of every instance of ``model``."""
        return [(iid, state) for iid, (_, state) in self._instances.get(model, {}).items()]


class StaticKeyAuthenticator:
    """API keys held in memory; tokens are kept only as SHA-256 digests."""

    def __init__(self, keys: Mapping[str, Principal] | None = None) -> None:
        """Start with ``keys`` (token -> principal)."""
        self._by_digest: dict[bytes, Principal] = {}
        for token, principal in (keys or {}).items():
            self.add(token, principal)

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8")).digest()

    def add(self, token: str, principal: Principal) -> None:
        """Accept ``token`` as ``principal``."""
        if not token:
            raise ValueError("an API key must not be empty")
        self._by_digest[self._digest(token)] = principal

    def revoke(self, token: str) -> None:
        """Stop accepting ``token``."""
        self._by_digest.pop(self._digest(token), None)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or ``None``."""
        return self._by_digest.get(self._digest(token))


class InMemoryUsageSink:
    """Keeps every usage record in a list and aggregates on demand."""

    def __init__(self) -> None:
        """Start empty."""
        self.records: list[UsageRecord] = []

    async def record(self, usage: UsageRecord) -> None:
        """Append ``usage``."""
        self.records.append(usage)

    def totals(self) -> list[UsageRecord]:
        """Records summed per user, key, model and day, in first-seen order."""
        sums: dict[tuple[str, str | None, str, object], UsageRecord] = {}
        for r in self.records:
            k = (r.user_id, r.key_id, r.model, r.day)
            prev = sums.get(k)
            sums[k] = (
                r
                if prev is None
                else replace(
                    prev,
                    prompt_tokens=prev.prompt_tokens + r.prompt_tokens,
                    completion_tokens=prev.completion_tokens + r.completion_tokens,
                    requests=prev.requests + r.requests,
                )
            )
        return list(sums.values())
