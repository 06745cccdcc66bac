"""What the CANN plugin reads from the recorded npu-smi output, field by field."""

from __future__ import annotations

from pathlib import Path

from gpustack_accelerator_cann import CannAccelerator

from gpustack_core.testing import ConformanceManifest

RECORDINGS = ConformanceManifest.beside(__file__)


def test_recorded_910a(tmp_path: Path) -> None:
    options = RECORDINGS.recording("atlas-800-9010-24.1.RC2").fake_tools(tmp_path).options()
    devices = CannAccelerator().detect(options)
    assert [d.index for d in devices] == list(range(8))
    first = devices[0]
    assert first.name == "Ascend 910A"
    assert first.uuid == "npu-0000:c1:00.0"
    assert first.pci_bus_id == "0000:C1:00.0"
    assert first.memory_total_bytes == 32768 * 2**20
    assert first.memory_used_bytes == 0
    assert first.temperature_celsius == 42.0
    assert first.utilization_percent == 0.0
    assert first.driver_version == "24.1.RC2"
    assert first.extra["memory_kind"] == "HBM"
    assert devices[3].extra["health"] == "Warning"


def test_recorded_310_card_gives_one_device_per_chip(tmp_path: Path) -> None:
    options = RECORDINGS.recording("atlas-800-3000-21.0.4").fake_tools(tmp_path).options()
    devices = CannAccelerator().detect(options)
    assert [(d.index, d.extra["npu_id"], d.extra["chip_id"]) for d in devices] == [
        (0, "6", "0"),
        (1, "6", "1"),
        (2, "6", "2"),
        (3, "6", "3"),
    ]
    assert devices[1].name == "Ascend 310"
    assert devices[1].memory_total_bytes == 8192 * 2**20
    assert devices[1].memory_used_bytes == 2867 * 2**20
    assert devices[1].extra["memory_kind"] == "DDR"
    assert devices[0].driver_version == "21.0.4.B030"


def test_empty_subset() -> None:
    assert CannAccelerator().visibility_env([]) == {"ASCEND_RT_VISIBLE_DEVICES": "-1"}
