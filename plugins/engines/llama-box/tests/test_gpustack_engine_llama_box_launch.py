"""LlamaBoxEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags)."""

from __future__ import annotations

from gpustack_engine_llama_box import LlamaBoxEngine
from gpustack_engine_llama_box._cli import LLAMA_BOX_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestLlamaBoxLaunch(LaunchSpecSuite):
    engine = LlamaBoxEngine()
    executable = "/opt/engines/llama-box/0.0.140/llama-box"
    extra_scenarios = {
        "nvidia-image": {"vendor": "nvidia", "category": ModelCategory.IMAGE},
        "cpu-embedding": {"vendor": "cpu", "category": ModelCategory.EMBEDDING},
    }

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """Everything after the executable, against llama-box's recorded flags."""
        return command[1:], LLAMA_BOX_FLAGS
