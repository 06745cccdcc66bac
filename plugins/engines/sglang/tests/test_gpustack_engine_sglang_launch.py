"""SglangEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags)."""

from __future__ import annotations

from gpustack_engine_sglang import SglangEngine
from gpustack_engine_sglang._cli import SGLANG_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestSglangLaunch(LaunchSpecSuite):
    engine = SglangEngine()
    executable = "/opt/engines/sglang/0.4.1/bin/python"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {"nvidia-embedding": {"vendor": "nvidia", "category": ModelCategory.EMBEDDING}}

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``python -m sglang.launch_server <flags>``: the flags against sglang's recorded set."""
        assert command[1:3] == ("-m", "sglang.launch_server")
        return command[3:], SGLANG_FLAGS
