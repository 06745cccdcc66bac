"""llama-server's flags for the performance presets (:class:`gpustack_core.types.PerformancePreset`).

Read from ``common/arg.cpp`` and ``common/speculative.cpp`` of the llama.cpp vendored in the
llama-cpp-python 0.3.36 sdist (commit 0c1e57098), all enabled for ``LLAMA_EXAMPLE_SERVER``:

- ``--spec-type`` with ``draft-simple`` (a draft model), ``draft-eagle3`` (an EAGLE-3 head in
  GGUF), ``draft-mtp`` (the model's own MTP layers), ``ngram-simple`` (prompt lookup);
- ``--spec-draft-model`` (alias ``-md``/``--model-draft``), ``--spec-draft-n-max`` (tokens to
  draft), ``--spec-ngram-simple-size-m`` (length of the drafted m-gram);
- modes: ``--parallel`` (slots; the KV cache is unified, so every slot may use the whole context).

llama.cpp has no LMCache/HiCache; a KV-cache extension is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpustack_core.engines import version_sort_key
from gpustack_core.errors import EngineArgumentError

if TYPE_CHECKING:
    from gpustack_core.types import PerformancePreset


__all__ = ["MIN_PRESET_VERSION", "preset_args"]

#: The llama-cpp-python version whose vendored llama.cpp has ``--spec-type``.
MIN_PRESET_VERSION = "0.3.36"
_TYPES = {
    "eagle3": "draft-eagle3",
    "mtp": "draft-mtp",
    "ngram": "ngram-simple",
    "draft_model": "draft-simple",
}
_SLOTS = {"latency": 1, "throughput": 16}


def preset_args(preset: PerformancePreset | None, version: str) -> list[str]:
    """``llama-server`` arguments for ``preset`` at llama-cpp-python ``version``.

    Raises:
        EngineArgumentError: speculative decoding asked of a build older than :data:`MIN_PRESET_VERSION`.
    """
    if preset is None:
        return []
    args: list[str] = []
    if preset.mode in _SLOTS:
        args += ["--parallel", str(_SLOTS[preset.mode])]
    spec = preset.speculative
    if spec is None:
        return args
    if version_sort_key(version) < version_sort_key(MIN_PRESET_VERSION):
        raise EngineArgumentError(
            f"llama.cpp of llama-cpp-python {version} has no --spec-type; this plugin maps speculative "
            f"decoding for {MIN_PRESET_VERSION} and later: pin engine_version"
        )
    args += ["--spec-type", _TYPES[spec.method]]
    if spec.draft_model:
        args += ["--spec-draft-model", spec.draft_model]
    if spec.method == "ngram":
        args += ["--spec-ngram-simple-size-m", str(spec.num_speculative_tokens)]
    else:
        args += ["--spec-draft-n-max", str(spec.num_speculative_tokens)]
    return args
