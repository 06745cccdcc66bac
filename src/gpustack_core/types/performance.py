"""Performance presets of a deployment: typed options that each engine plugin maps to its own flags.

A deployment says *what* it wants (``mode``, speculative decoding, a KV-cache extension); the engine
plugin knows *how* at its pinned version, and an engine that cannot do one refuses with a clear
error (:func:`preset_refusal`, used by the scheduler and by the plugins' launch specs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ._base import Bytes, ValueModel

if TYPE_CHECKING:
    from .engines import EngineCapabilities

__all__ = [
    "KVCacheExtension",
    "KVCacheExtensionKind",
    "PerformanceMode",
    "PerformancePreset",
    "SpeculativeDecoding",
    "SpeculativeMethod",
    "preset_refusal",
]

PerformanceMode = Literal["latency", "throughput", "balanced"]
SpeculativeMethod = Literal["eagle3", "mtp", "ngram", "draft_model"]
KVCacheExtensionKind = Literal["lmcache", "hicache"]

_NEEDS_DRAFT: frozenset[str] = frozenset({"eagle3", "draft_model"})


class SpeculativeDecoding(ValueModel):
    """Speculative decoding: a draft proposes tokens the model verifies in one pass.

    ``eagle3`` (an EAGLE-3 draft head) and ``draft_model`` (a small model of the same vocabulary)
    need ``draft_model``; ``mtp`` uses the model's own multi-token-prediction layers and ``ngram``
    looks tokens up in the prompt: they take none.
    """

    method: SpeculativeMethod
    draft_model: str | None = Field(
        default=None, description="path (or hub id, for engines that download) of the draft head or model"
    )
    num_speculative_tokens: int = Field(default=3, ge=1, le=32, description="tokens proposed per step")

    @model_validator(mode="after")
    def _draft_matches_method(self) -> SpeculativeDecoding:
        if self.method in _NEEDS_DRAFT and not self.draft_model:
            raise ValueError(f"speculative method {self.method!r} needs draft_model (its path)")
        if self.method not in _NEEDS_DRAFT and self.draft_model:
            raise ValueError(f"speculative method {self.method!r} takes no draft_model")
        return self


class KVCacheExtension(ValueModel):
    """KV cache beyond device memory: LMCache (vLLM) or SGLang HiCache, in host memory and on disk."""

    kind: KVCacheExtensionKind
    host_memory_bytes: Bytes = Field(gt=0, description="host memory for KV blocks (counted by the estimator)")
    disk_path: str | None = Field(default=None, description="directory for a disk tier; None: no disk tier")
    disk_bytes: Bytes | None = Field(default=None, description="size of the disk tier")

    @model_validator(mode="after")
    def _disk_pair(self) -> KVCacheExtension:
        if (self.disk_path is None) != (self.disk_bytes is None):
            raise ValueError("a disk tier needs both disk_path and disk_bytes")
        return self


class PerformancePreset(ValueModel):
    """How a deployment trades latency for throughput, and which accelerations it uses.

    ``mode``: ``latency`` (few concurrent sequences, small batches), ``throughput`` (many sequences,
    large batches), ``balanced`` (the engine's defaults: no flags).
    """

    mode: PerformanceMode = "balanced"
    speculative: SpeculativeDecoding | None = None
    kv_cache_extension: KVCacheExtension | None = None


def preset_refusal(engine: str, caps: EngineCapabilities, preset: PerformancePreset | None) -> str | None:
    """Why ``engine`` (with capabilities ``caps``) cannot run ``preset``; None when it can."""
    if preset is None:
        return None
    if preset.mode != "balanced" and preset.mode not in caps.performance_modes:
        modes = ", ".join(caps.performance_modes) or "only balanced"
        return f"engine {engine} has no {preset.mode!r} performance mode (it has: {modes})"
    spec = preset.speculative
    if spec is not None and spec.method not in caps.speculative_methods:
        have = ", ".join(caps.speculative_methods) or "none"
        return f"engine {engine} cannot do speculative decoding with {spec.method!r} (it can: {have})"
    ext = preset.kv_cache_extension
    if ext is not None and ext.kind not in caps.kv_cache_extensions:
        have = ", ".join(caps.kv_cache_extensions) or "none"
        return f"engine {engine} has no {ext.kind!r} KV-cache extension (it has: {have})"
    return None
