"""TrtllmEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags).

Run at the default version (1.2.1) and again at 1.0.0, which stays installable side by side. Both
check the emitted flags against the options both recorded snapshots of ``trtllm-serve serve``
declare (``_cli.py`` says why 1.2.1's own file is not among them).
"""

from __future__ import annotations

from pathlib import Path

from gpustack_engine_trtllm import OWNED_FLAGS, TrtllmEngine
from gpustack_engine_trtllm._cli import (
    TRTLLM_SERVE_FLAGS_00209AF,
    TRTLLM_SERVE_FLAGS_4C05A74,
    TRTLLM_SERVE_FLAGS_BOTH,
)

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestTrtllmLaunch(LaunchSpecSuite):
    engine = TrtllmEngine()
    executable = "/opt/engines/trtllm/1.2.1/bin/trtllm-serve"
    request_defaults = {"model_paths": ("/models/qwen/model-00001-of-00002.safetensors",)}
    extra_scenarios = {
        "nvidia-vlm": {"vendor": "nvidia", "category": ModelCategory.VLM, "context_length": None}
    }

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``trtllm-serve serve <model> <flags>``: the flags against both recorded snapshots."""
        assert command[1] == "serve"
        return command[3:], TRTLLM_SERVE_FLAGS_BOTH


class TestTrtllm100Launch(TestTrtllmLaunch):
    """TensorRT-LLM 1.0.0, installable side by side: the same command."""

    version = "1.0.0"
    executable = "/opt/engines/trtllm/1.0.0/bin/trtllm-serve"
    golden_dir = Path(__file__).parent / "golden" / "1.0.0"


def test_default_is_the_current_release() -> None:
    assert TrtllmEngine().default_version() == "1.2.1"


def test_the_older_snapshot_is_a_subset_of_the_newer_one() -> None:
    # every option of the older main snapshot survives in the newer one, so an option both declare
    # was declared all along between them
    assert TRTLLM_SERVE_FLAGS_4C05A74 <= TRTLLM_SERVE_FLAGS_00209AF
    assert TRTLLM_SERVE_FLAGS_BOTH == TRTLLM_SERVE_FLAGS_4C05A74
    # the long aliases arrived between the snapshots; the plugin owns them too, so a user cannot
    # pass a second tensor-parallel size under the other name
    assert {"--tensor_parallel_size", "--pipeline_parallel_size"} <= OWNED_FLAGS
    assert {"--tensor_parallel_size", "--pipeline_parallel_size"}.isdisjoint(TRTLLM_SERVE_FLAGS_4C05A74)
