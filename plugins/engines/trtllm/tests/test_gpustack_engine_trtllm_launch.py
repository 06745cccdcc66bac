"""TrtllmEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags)."""

from __future__ import annotations

from gpustack_engine_trtllm import TrtllmEngine
from gpustack_engine_trtllm._cli import TRTLLM_SERVE_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestTrtllmLaunch(LaunchSpecSuite):
    engine = TrtllmEngine()
    executable = "/opt/engines/trtllm/1.0.0/bin/trtllm-serve"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {
        "nvidia-vlm": {"vendor": "nvidia", "category": ModelCategory.VLM, "context_length": None}
    }

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``trtllm-serve serve <model> <flags>``: the flags against trtllm-serve's recorded set."""
        assert command[1] == "serve"
        return command[3:], TRTLLM_SERVE_FLAGS
