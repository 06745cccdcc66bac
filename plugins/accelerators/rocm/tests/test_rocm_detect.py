"""What the ROCm plugin reads from the recorded AMD output, and the Hygon cards it leaves to DTK."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_accelerator_rocm import RocmAccelerator

from gpustack_core.errors import AcceleratorNotPresent
from gpustack_core.testing import ConformanceManifest

RECORDINGS = ConformanceManifest.beside(__file__)
DTK_RECORDINGS = ConformanceManifest.load(Path(__file__).parents[2] / "dtk/tests/fixtures/conformance.toml")


def test_recorded_rx7800xt_fields(tmp_path: Path) -> None:
    options = RECORDINGS.recording("rx7800xt-6.2.4").fake_tools(tmp_path).options()
    (device,) = RocmAccelerator().detect(options)
    assert device.uuid == "GPU-5c88007d760374f3"
    assert device.name == "AMD Radeon RX 7800 XT"
    assert device.architecture == "gfx1101"
    assert device.core_count == 60
    assert device.memory_total_bytes == 17163091968
    assert device.memory_used_bytes == 11615076352
    assert device.utilization_percent == 100.0
    assert device.temperature_celsius == 45.0
    assert (device.driver_version, device.runtime_version) == ("6.2.4", "1.13")


def test_hygon_cards_are_left_to_dtk(tmp_path: Path) -> None:
    options = DTK_RECORDINGS.recording("hygon-dcu-24.04.3").fake_tools(tmp_path).options()
    with pytest.raises(AcceleratorNotPresent, match="no AMD GPU"):
        RocmAccelerator().detect(options)


def test_empty_subset_hides_all() -> None:
    assert RocmAccelerator().visibility_env([]) == {"ROCR_VISIBLE_DEVICES": "-1"}
