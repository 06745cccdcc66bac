"""What the MetaX plugin reads from recorded mx-smi output, and how it refuses output it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_accelerator_metax import MetaxAccelerator, parse_mx_smi

from gpustack_core.errors import AcceleratorOutputError
from gpustack_core.testing import ConformanceManifest

RECORDINGS = ConformanceManifest.beside(__file__)
EIGHT = (Path(__file__).parent / "fixtures" / "mx-smi-2.2.4-c550x8.txt").read_text()


def test_eight_c550_fields(tmp_path: Path) -> None:
    options = RECORDINGS.recording("c550x8-mx-smi-2.2.4").fake_tools(tmp_path).options()
    devices = MetaxAccelerator().detect(options)
    assert [d.index for d in devices] == list(range(8))
    assert [d.pci_bus_id for d in devices][:3] == ["0000:0f:00.0", "0000:34:00.0", "0000:48:00.0"]
    first = devices[0]
    assert (first.name, first.uuid) == ("MetaX C550", "MX-PCI-0000:0f:00.0")
    assert (first.memory_total_bytes, first.memory_used_bytes) == (65536 * 2**20, 858 * 2**20)
    assert (first.utilization_percent, first.temperature_celsius) == (0.0, 29.0)
    assert (first.driver_version, first.runtime_version) == ("2.15.9", "2.32.0.6")
    assert first.extra == {"state": "Available", "bios_version": "1.25.1.0"}
    assert [d.temperature_celsius for d in devices] == [29, 29, 30, 29, 30, 32, 32, 31]


def test_unknown_maca_version_and_missing_power_cap(tmp_path: Path) -> None:
    """mx-smi 2.1.12 in a pod prints ``MACA Version: unknown``, ``97W / NA`` and no GPU state."""
    options = RECORDINGS.recording("c550x1-mx-smi-2.1.12").fake_tools(tmp_path).options()
    (device,) = MetaxAccelerator().detect(options)
    assert device.runtime_version is None
    assert device.driver_version == "2.12.13"
    assert device.temperature_celsius == 34.0
    assert "state" not in device.extra


def test_fewer_rows_than_attached_gpus_is_an_error() -> None:
    cut = EIGHT.split("| 7           MetaX C550")[0]
    with pytest.raises(AcceleratorOutputError, match=r"mx-smi.*'Attached GPUs' says 8 but 7"):
        parse_mx_smi(cut, "metax")


def test_memory_that_is_not_mib_is_an_error() -> None:
    bad = EIGHT.replace("858/65536 MiB", "858/65536 GiB", 1)
    with pytest.raises(AcceleratorOutputError, match=r"GPU 0: memory is not 'used/total MiB'"):
        parse_mx_smi(bad, "metax")


def test_visibility_lists_indices_and_hides_all_for_empty(tmp_path: Path) -> None:
    accelerator = MetaxAccelerator()
    options = RECORDINGS.recording("c550x8-mx-smi-2.2.4").fake_tools(tmp_path).options()
    devices = accelerator.detect(options)
    assert accelerator.visibility_env([devices[5], devices[2]]) == {"MACA_VISIBLE_DEVICES": "5,2"}
    assert accelerator.visibility_env([]) == {"MACA_VISIBLE_DEVICES": "-1"}
