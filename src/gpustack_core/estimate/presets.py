"""What a deployment's performance preset adds to an estimate: host KV memory and a draft model."""

from __future__ import annotations

from gpustack_core.types import MemoryItem, PerformancePreset, ResourceClaim, ResourceEstimate

from .llamacpp import PROCESS_OVERHEAD_LABEL, RUNTIME_OVERHEAD_BYTES

__all__ = ["with_preset"]


def _draft_items(items: tuple[MemoryItem, ...]) -> tuple[MemoryItem, ...]:
    """The draft's items, labelled; its process overhead is the target's process's, counted once:
    only the draft's vocabulary remains of that item."""
    drafted: list[MemoryItem] = []
    for item in items:
        if item.label == PROCESS_OVERHEAD_LABEL:
            item = MemoryItem(label="vocabulary", bytes=max(item.bytes - RUNTIME_OVERHEAD_BYTES, 0))
        drafted.append(item.model_copy(update={"label": f"draft model: {item.label}"}))
    return tuple(drafted)


def _claim(
    claim: ResourceClaim, host: tuple[MemoryItem, ...], draft: ResourceEstimate | None
) -> ResourceClaim:
    host_items = claim.host_items + host
    devices = claim.devices
    if draft is not None:
        if devices:
            # the draft runs where the model's first layers are (llama.cpp: the main device)
            single = next((c for c in draft.claims if c.strategy == "single_device"), None)
            if single is not None and single.devices:
                extra = _draft_items(single.devices[0].items)
                first = devices[0]
                first = first.model_copy(
                    update={
                        "items": first.items + extra,
                        "memory_bytes": first.memory_bytes + sum(i.bytes for i in extra),
                    }
                )
                devices = (first, *devices[1:])
                host_items += _draft_items(single.host_items)
        else:
            cpu = next((c for c in draft.claims if c.strategy == "cpu_only"), None)
            if cpu is not None:
                host_items += _draft_items(cpu.host_items)
    return claim.model_copy(
        update={
            "devices": devices,
            "host_items": host_items,
            "host_memory_bytes": sum(i.bytes for i in host_items),
        }
    )


def with_preset(
    estimate: ResourceEstimate, preset: PerformancePreset | None, draft: ResourceEstimate | None = None
) -> ResourceEstimate:
    """``estimate`` with what ``preset`` costs on top.

    A KV-cache extension's ``host_memory_bytes`` go to every claim's host memory (LMCache and HiCache
    allocate them up front). ``draft``, the estimate of a draft model run in the same process
    (llama.cpp ``--spec-draft-model``), adds its single-device items to the first device of every
    GPU claim and its CPU-only items to CPU-only claims, each labelled ``draft model: ...``, less
    the process overhead the target's estimate already holds (the draft's vocabulary stays).
    """
    if preset is None or (preset.kv_cache_extension is None and draft is None):
        return estimate
    host: tuple[MemoryItem, ...] = ()
    ext = preset.kv_cache_extension
    if ext is not None:
        host = (
            MemoryItem(label=f"KV-cache extension ({ext.kind}) in host memory", bytes=ext.host_memory_bytes),
        )
    notes = estimate.notes
    if draft is not None:
        notes += (f"speculative decoding: draft model {draft.model} counted",)
    return estimate.model_copy(
        update={"claims": tuple(_claim(c, host, draft) for c in estimate.claims), "notes": notes}
    )
