"""Fallback chains: which models answer a request when the one it named cannot.

A host gives the gateway a :class:`FallbackPolicy`. For a request to model ``m`` the gateway tries
``m``, then each of ``policy.fallbacks(m)`` in order that the caller may call, moving on when the
model has no running instance, when every instance of it refused the connection or timed out, or
when it answered with a 5xx status — always before any byte of an answer reached the client. The
answer's ``model`` field is the one the serving engine wrote (the gateway sends it the fallback's
name), and ``gpustack_gateway_fallbacks_total{model,fallback,reason}`` counts each move.

A multipart request (audio transcription) streams its body to the engine and cannot be sent twice:
it never falls back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["FallbackPolicy", "StaticFallbacks"]


@runtime_checkable
class FallbackPolicy(Protocol):
    """The ordered fallback models of a model. Called on every request: keep it in memory."""

    def fallbacks(self, model: str) -> Sequence[str]:
        """The models to try, in order, when ``model`` cannot answer (empty: none)."""
        ...


class StaticFallbacks:
    """A fixed table of fallback chains (for embedding the gateway and for tests)."""

    def __init__(self, chains: Mapping[str, Sequence[str]] | None = None) -> None:
        """``chains`` maps a model to its fallback models, tried in order."""
        self.chains: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (chains or {}).items()}

    def fallbacks(self, model: str) -> Sequence[str]:
        """The fallback models of ``model``."""
        return self.chains.get(model, ())
