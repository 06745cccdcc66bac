"""vLLM's flags for the performance presets (:class:`gpustack_core.types.PerformancePreset`).

Recorded from the vllm-0.33.0 sdist (PyPI):

- ``--speculative-config`` (JSON, alias ``-sc``; ``vllm/engine/arg_utils.py``), keys from
  ``vllm/config/speculative.py``: ``method`` in ``eagle3``, ``mtp``, ``ngram``, ``draft_model``
  (its ``SpeculativeMethod``; the same at commit f19b16d95e4395790661f4835e4436bc3dd5d9c7),
  ``model`` (the draft head or model; ``mtp`` uses the target's own layers),
  ``num_speculative_tokens``, ``prompt_lookup_max``/``prompt_lookup_min`` for ``ngram``. The 0.7
  series has no ``--speculative-config`` (only ``--speculative-model``).
- ``--kv-transfer-config`` (JSON, ``KVTransferConfig``; present since the 0.7 series) with
  ``LMCacheConnectorV1`` (registered in 0.33.0's ``kv_connector/factory.py``) and ``kv_role:
  kv_both``; LMCache reads its tiers from ``LMCACHE_LOCAL_CPU``, ``LMCACHE_MAX_LOCAL_CPU_SIZE``
  (GiB), ``LMCACHE_LOCAL_DISK`` (``file://DIR/``), ``LMCACHE_MAX_LOCAL_DISK_SIZE`` (GiB) and
  ``LMCACHE_CHUNK_SIZE`` (LMCache's v1 configuration docs). The ``lmcache`` package must be
  installed in the vLLM environment.
- ``--max-num-seqs``, ``--max-num-batched-tokens``: every version's scheduler limits.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gpustack_core.engines import version_sort_key
from gpustack_core.errors import EngineArgumentError

if TYPE_CHECKING:
    from gpustack_core.types import PerformancePreset


__all__ = ["MIN_PRESET_VERSION", "PRESET_FLAGS", "preset_args"]

#: The oldest vLLM this plugin maps speculative decoding and LMCache for: the release whose source
#: these flags were checked against (older ones may have them too; pin at your own risk).
MIN_PRESET_VERSION = "0.33.0"
#: Flags the presets emit (added to the recorded CLI set the launch-spec suite checks).
PRESET_FLAGS: frozenset[str] = frozenset(
    {"--speculative-config", "--kv-transfer-config", "--max-num-seqs", "--max-num-batched-tokens"}
)
#: mode -> (max concurrent sequences, max tokens per scheduler step): few short steps for latency,
#: many sequences and large prefill chunks for throughput.
_MODES = {"latency": (16, 2048), "throughput": (512, 16384)}
_GIB = 2**30


def preset_args(preset: PerformancePreset | None, version: str) -> tuple[list[str], dict[str, str]]:
    """``vllm serve`` arguments and environment for ``preset`` at vLLM ``version``.

    Raises:
        EngineArgumentError: speculative decoding or LMCache asked of a vLLM older than
            :data:`MIN_PRESET_VERSION`.
    """
    if preset is None:
        return [], {}
    args: list[str] = []
    env: dict[str, str] = {}
    if preset.mode in _MODES:
        seqs, tokens = _MODES[preset.mode]
        args += ["--max-num-seqs", str(seqs), "--max-num-batched-tokens", str(tokens)]
    wants_new = preset.speculative is not None or preset.kv_cache_extension is not None
    if wants_new and version_sort_key(version) < version_sort_key(MIN_PRESET_VERSION):
        raise EngineArgumentError(
            f"vLLM {version} has no --speculative-config / LMCache V1 connector; this plugin maps "
            f"speculative decoding and LMCache for vLLM >= {MIN_PRESET_VERSION}: pin engine_version"
        )
    spec = preset.speculative
    if spec is not None:
        config: dict[str, object] = {
            "method": spec.method,
            "num_speculative_tokens": spec.num_speculative_tokens,
        }
        if spec.draft_model:
            config["model"] = spec.draft_model
        if spec.method == "ngram":
            config["prompt_lookup_max"] = 4
            config["prompt_lookup_min"] = 2
        args += ["--speculative-config", json.dumps(config, sort_keys=True)]
    ext = preset.kv_cache_extension
    if ext is not None:  # lmcache: the capabilities claim nothing else
        kv = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}
        args += ["--kv-transfer-config", json.dumps(kv, sort_keys=True)]
        env.update(
            {
                "LMCACHE_CHUNK_SIZE": "256",
                "LMCACHE_LOCAL_CPU": "True",
                "LMCACHE_MAX_LOCAL_CPU_SIZE": f"{ext.host_memory_bytes / _GIB:g}",
            }
        )
        if ext.disk_path is not None and ext.disk_bytes is not None:
            env["LMCACHE_LOCAL_DISK"] = f"file://{ext.disk_path.rstrip('/')}/"
            env["LMCACHE_MAX_LOCAL_DISK_SIZE"] = f"{ext.disk_bytes / _GIB:g}"
    return args, env
