"""VllmEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags).

Run at the default version (0.33.0: ``--runner``/``--convert``, every preset mapped) and again at
0.7.3, which stays installable side by side (``--task``; speculative decoding and LMCache refused).
"""

from __future__ import annotations

from pathlib import Path

from gpustack_engine_vllm import VllmEngine
from gpustack_engine_vllm._cli import RAY_START_FLAGS, VLLM_SERVE_FLAGS, VLLM_SERVE_FLAGS_0_33
from gpustack_engine_vllm._presets import PRESET_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestVllmLaunch(LaunchSpecSuite):
    engine = VllmEngine()
    executable = "/opt/engines/vllm/0.33.0/bin/vllm"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {
        "nvidia-embedding": {"vendor": "nvidia", "category": ModelCategory.EMBEDDING},
        "nvidia-rerank-extra": {
            "vendor": "nvidia",
            "category": ModelCategory.RERANK,
            "extra_args": ("--dtype", "half"),
        },
    }
    serve_flags = VLLM_SERVE_FLAGS_0_33

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``ray start <flags>`` against Ray's recorded set, ``vllm serve <model> <flags>`` against vLLM's."""
        if Path(command[0]).name == "ray":
            return command[2:], RAY_START_FLAGS
        return command[3:], self.serve_flags


def test_preset_flags_exist_in_the_recorded_0_33_cli() -> None:
    assert frozenset(PRESET_FLAGS) <= VLLM_SERVE_FLAGS_0_33


class TestVllm073Launch(TestVllmLaunch):
    """vLLM 0.7.3, installable side by side: ``--task``, and presets it lacks refused."""

    version = "0.7.3"
    executable = "/opt/engines/vllm/0.7.3/bin/vllm"
    golden_dir = Path(__file__).parent / "golden" / "0.7.3"
    serve_flags = VLLM_SERVE_FLAGS | {"--max-num-seqs", "--max-num-batched-tokens"}
    version_refused_presets = {
        name: r"vLLM 0\.7\.3 has no --speculative-config.*pin engine_version"
        for name in ("spec-eagle3", "spec-mtp", "spec-ngram", "spec-draft-model", "kv-lmcache")
    }
