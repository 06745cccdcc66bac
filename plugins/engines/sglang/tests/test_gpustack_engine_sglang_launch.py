"""SglangEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags).

Run at the default version (0.5.23, every preset mapped) and again at 0.4.1, which stays
installable side by side (speculative decoding and HiCache refused).
"""

from __future__ import annotations

from pathlib import Path

from gpustack_engine_sglang import SglangEngine
from gpustack_engine_sglang._cli import SGLANG_FLAGS, SGLANG_FLAGS_0_5_23
from gpustack_engine_sglang._presets import PRESET_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestSglangLaunch(LaunchSpecSuite):
    engine = SglangEngine()
    executable = "/opt/engines/sglang/0.5.23/bin/python"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {"nvidia-embedding": {"vendor": "nvidia", "category": ModelCategory.EMBEDDING}}
    launch_flags = SGLANG_FLAGS_0_5_23

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``python -m sglang.launch_server <flags>``: the flags against sglang's recorded set."""
        assert command[1:3] == ("-m", "sglang.launch_server")
        return command[3:], self.launch_flags


def test_preset_flags_exist_in_the_recorded_0_5_23_cli() -> None:
    assert frozenset(PRESET_FLAGS) <= SGLANG_FLAGS_0_5_23
    assert SGLANG_FLAGS_0_5_23 | {"--enable-flashinfer-mla"} >= SGLANG_FLAGS


class TestSglang041Launch(TestSglangLaunch):
    """SGLang 0.4.1, installable side by side: presets it lacks are refused."""

    version = "0.4.1"
    executable = "/opt/engines/sglang/0.4.1/bin/python"
    golden_dir = Path(__file__).parent / "golden" / "0.4.1"
    launch_flags = SGLANG_FLAGS | {"--max-running-requests", "--chunked-prefill-size"}
    version_refused_presets = {
        name: r"SGLang 0\.4\.1 lacks.*pin engine_version"
        for name in ("spec-eagle3", "spec-mtp", "spec-ngram", "spec-draft-model", "kv-hicache")
    }
