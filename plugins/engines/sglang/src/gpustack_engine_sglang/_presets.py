"""SGLang's flags for the performance presets (:class:`gpustack_core.types.PerformancePreset`).

Checked against the sglang 0.5.23 wheel (``sglang/srt/arg_groups/fields/spec.py``: algorithms
EAGLE, EAGLE3, NEXTN, STANDALONE, NGRAM, ...; ``fields/memory.py``: HiCache sizes and the ``file``
storage backend; ``srt/environ.py``: ``SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR``) and SGLang's
documentation (``docs/advanced_features/speculative_decoding.md``, ``hicache_best_practices.md``):

- speculative decoding: ``--speculative-algorithm`` ``EAGLE3`` (EAGLE-3 head), ``EAGLE`` without a
  draft path (MTP: the model's own next-token layers, as for DeepSeek-V3), ``NGRAM`` (CUDA only),
  ``STANDALONE`` (a small draft model); ``--speculative-draft-model-path``,
  ``--speculative-num-steps``, ``--speculative-eagle-topk``, ``--speculative-num-draft-tokens``;
- HiCache: ``--enable-hierarchical-cache``, ``--hicache-size`` (GB of host memory; overrides
  ``--hicache-ratio``), ``--hicache-storage-backend file`` with its directory in
  ``SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR``;
- modes: ``--max-running-requests``, ``--chunked-prefill-size`` (present in every version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpustack_core.engines import version_sort_key
from gpustack_core.errors import EngineArgumentError

if TYPE_CHECKING:
    from gpustack_core.types import PerformancePreset


__all__ = ["MIN_PRESET_VERSION", "PRESET_FLAGS", "preset_args"]

#: The oldest SGLang this plugin maps speculative decoding and HiCache for: the release whose
#: source these flags were checked against (older 0.5 releases may have them too).
MIN_PRESET_VERSION = "0.5.23"
PRESET_FLAGS: frozenset[str] = frozenset(
    {
        "--max-running-requests", "--chunked-prefill-size", "--speculative-algorithm",
        "--speculative-draft-model-path", "--speculative-num-steps", "--speculative-eagle-topk",
        "--speculative-num-draft-tokens", "--enable-hierarchical-cache", "--hicache-size",
        "--hicache-storage-backend",
    }
)  # fmt: skip
_MODES = {"latency": (16, 2048), "throughput": (512, 16384)}
_ALGORITHMS = {"eagle3": "EAGLE3", "mtp": "EAGLE", "ngram": "NGRAM", "draft_model": "STANDALONE"}
_GIB = 2**30


def preset_args(preset: PerformancePreset | None, version: str) -> tuple[list[str], dict[str, str]]:
    """``sglang.launch_server`` arguments and environment for ``preset`` at SGLang ``version``.

    Raises:
        EngineArgumentError: speculative decoding or HiCache asked of an SGLang older than
            :data:`MIN_PRESET_VERSION`.
    """
    if preset is None:
        return [], {}
    args: list[str] = []
    env: dict[str, str] = {}
    if preset.mode in _MODES:
        running, chunk = _MODES[preset.mode]
        args += ["--max-running-requests", str(running), "--chunked-prefill-size", str(chunk)]
    wants_new = preset.speculative is not None or preset.kv_cache_extension is not None
    if wants_new and version_sort_key(version) < version_sort_key(MIN_PRESET_VERSION):
        raise EngineArgumentError(
            f"SGLang {version} lacks the EAGLE3/NGRAM/STANDALONE algorithms and HiCache storage; this "
            f"plugin maps speculative decoding and HiCache for SGLang >= {MIN_PRESET_VERSION}: "
            "pin engine_version"
        )
    spec = preset.speculative
    if spec is not None:
        n = spec.num_speculative_tokens
        args += ["--speculative-algorithm", _ALGORITHMS[spec.method]]
        if spec.draft_model:
            args += ["--speculative-draft-model-path", spec.draft_model]
        if spec.method == "ngram":
            args += ["--speculative-num-draft-tokens", str(n)]
        else:  # a chain of n drafted tokens: n steps, top-1, n + 1 tokens verified
            args += ["--speculative-num-steps", str(n), "--speculative-eagle-topk", "1"]
            args += ["--speculative-num-draft-tokens", str(n + 1)]
    ext = preset.kv_cache_extension
    if ext is not None:  # hicache: the capabilities claim nothing else
        args += ["--enable-hierarchical-cache", "--hicache-size", str(max(1, ext.host_memory_bytes // _GIB))]
        if ext.disk_path is not None:
            args += ["--hicache-storage-backend", "file"]
            env["SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR"] = ext.disk_path
    return args, env
