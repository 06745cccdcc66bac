"""SglangEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags)."""

from __future__ import annotations

from pathlib import Path

from gpustack_engine_sglang import SglangEngine
from gpustack_engine_sglang._cli import SGLANG_FLAGS
from gpustack_engine_sglang._presets import MIN_PRESET_VERSION, PRESET_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestSglangLaunch(LaunchSpecSuite):
    engine = SglangEngine()
    executable = "/opt/engines/sglang/0.4.1/bin/python"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {"nvidia-embedding": {"vendor": "nvidia", "category": ModelCategory.EMBEDDING}}

    version_refused_presets = {
        name: r"SGLang 0\.4\.1 lacks.*pin engine_version"
        for name in ("spec-eagle3", "spec-mtp", "spec-ngram", "spec-draft-model", "kv-hicache")
    }

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``python -m sglang.launch_server <flags>``: the flags against sglang's recorded set."""
        assert command[1:3] == ("-m", "sglang.launch_server")
        return command[3:], SGLANG_FLAGS | PRESET_FLAGS


class TestSglangPresetsAtMinVersion(TestSglangLaunch):
    """The same suite at the oldest SGLang whose speculative decoding and HiCache flags the plugin maps."""

    version = MIN_PRESET_VERSION
    executable = f"/opt/engines/sglang/{MIN_PRESET_VERSION}/bin/python"
    golden_dir = Path(__file__).parent / "golden" / MIN_PRESET_VERSION
    version_refused_presets = {}
