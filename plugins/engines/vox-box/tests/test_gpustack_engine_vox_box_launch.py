"""VoxBoxEngine: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags)."""

from __future__ import annotations

from gpustack_engine_vox_box import VoxBoxEngine
from gpustack_engine_vox_box._cli import VOX_BOX_FLAGS

from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestVoxBoxLaunch(LaunchSpecSuite):
    engine = VoxBoxEngine()
    executable = "/opt/engines/vox-box/0.0.21/bin/vox-box"
    extra_scenarios = {
        "cpu-tts": {
            "vendor": "cpu",
            "category": ModelCategory.TEXT_TO_SPEECH,
            "model_paths": ("/models/cosyvoice",),
        },
    }

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``vox-box start <flags>``: the flags against vox-box's recorded set."""
        assert command[1] == "start"
        return command[2:], VOX_BOX_FLAGS
