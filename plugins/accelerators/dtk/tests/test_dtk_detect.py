"""What the DTK plugin reads from the recorded Hygon output, and the AMD cards it leaves to ROCm."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_accelerator_dtk import DtkAccelerator

from gpustack_core.errors import AcceleratorNotPresent
from gpustack_core.testing import ConformanceManifest

RECORDINGS = ConformanceManifest.beside(__file__)
ROCM_RECORDINGS = ConformanceManifest.load(Path(__file__).parents[2] / "rocm/tests/fixtures/conformance.toml")


def test_recorded_dcu_fields(tmp_path: Path) -> None:
    options = RECORDINGS.recording("hygon-dcu-24.04.3").fake_tools(tmp_path).options()
    (device,) = DtkAccelerator().detect(options)
    assert device.uuid == "GPU-7100fa8866904061"
    assert device.name == "K1xx_AI"
    assert device.vendor == "hygon"
    assert device.architecture == "gfx928"
    assert device.core_count == 12
    assert device.memory_total_bytes == 65520 * 2**20
    assert device.memory_used_bytes == 2 * 2**20
    assert device.utilization_percent == 0.0
    assert device.temperature_celsius == 41.0
    assert device.driver_version is None
    assert device.runtime_version == "1.1"


def test_amd_cards_are_left_to_rocm(tmp_path: Path) -> None:
    options = ROCM_RECORDINGS.recording("rx7800xt-6.2.4").fake_tools(tmp_path).options()
    with pytest.raises(AcceleratorNotPresent, match="no Hygon DCU"):
        DtkAccelerator().detect(options)
