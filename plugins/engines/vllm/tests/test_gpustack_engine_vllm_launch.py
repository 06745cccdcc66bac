"""VllmEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags)."""

from __future__ import annotations

from pathlib import Path

from gpustack_engine_vllm import VllmEngine
from gpustack_engine_vllm._cli import RAY_START_FLAGS, VLLM_SERVE_FLAGS
from gpustack_engine_vllm._presets import MIN_PRESET_VERSION, PRESET_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestVllmLaunch(LaunchSpecSuite):
    engine = VllmEngine()
    executable = "/opt/engines/vllm/0.7.3/bin/vllm"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {
        "nvidia-embedding": {"vendor": "nvidia", "category": ModelCategory.EMBEDDING},
        "nvidia-rerank-extra": {
            "vendor": "nvidia",
            "category": ModelCategory.RERANK,
            "extra_args": ("--dtype", "half"),
        },
    }

    version_refused_presets = {
        name: r"vLLM 0\.7\.3 has no --speculative-config.*pin engine_version"
        for name in ("spec-eagle3", "spec-mtp", "spec-ngram", "spec-draft-model", "kv-lmcache")
    }

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``ray start <flags>`` against Ray's recorded set, ``vllm serve <model> <flags>`` against vLLM's."""
        if Path(command[0]).name == "ray":
            return command[2:], RAY_START_FLAGS
        return command[3:], VLLM_SERVE_FLAGS | PRESET_FLAGS


class TestVllmPresetsAtMinVersion(TestVllmLaunch):
    """The same suite at the oldest vLLM whose speculative decoding and LMCache flags the plugin maps."""

    version = MIN_PRESET_VERSION
    executable = f"/opt/engines/vllm/{MIN_PRESET_VERSION}/bin/vllm"
    golden_dir = Path(__file__).parent / "golden" / MIN_PRESET_VERSION
    version_refused_presets = {}
