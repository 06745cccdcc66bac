"""What the ROCm plugin reads from the recorded AMD output, and the Hygon cards it leaves to DTK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpustack_accelerator_rocm import RocmAccelerator, parse_amd_smi

from gpustack_core.errors import AcceleratorNotPresent, AcceleratorOutputError
from gpustack_core.testing import ConformanceManifest, FakeTools

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


FIXTURES = Path(__file__).parent / "fixtures"
AMD_SMI_STATIC = (FIXTURES / "amd-smi-static-rx6600.json").read_text()
AMD_SMI_METRIC = (FIXTURES / "amd-smi-metric-rx6600.json").read_text()


def test_recorded_amd_smi_fields(tmp_path: Path) -> None:
    options = RECORDINGS.recording("rx6600-amd-smi").fake_tools(tmp_path).options()
    (device,) = RocmAccelerator().detect(options)
    assert device.name == "Navi 23 [Radeon RX 6600/6600 XT"  # cut short by amd-smi itself
    assert device.uuid == "AMD-PCI-0000:0b:00.0"  # the ASIC serial is N/A on this card
    assert device.pci_bus_id == "0000:0b:00.0"
    assert (device.memory_total_bytes, device.memory_used_bytes) == (8176 * 2**20, 202 * 2**20)
    assert (device.utilization_percent, device.temperature_celsius) == (1.0, 36.0)
    assert device.driver_version == "7.0.0-3-pve"
    assert device.extra == {"source": "amd-smi"}
    assert RocmAccelerator().visibility_env([device]) == {"ROCR_VISIBLE_DEVICES": "0"}


def test_amd_smi_gpu_data_wrapper_and_serial() -> None:
    """Newer amd-smi wraps the list in ``{"gpu_data": [...]}``; a serial gives the ROCr uuid."""
    static = json.loads(AMD_SMI_STATIC)
    static[0]["asic"]["asic_serial"] = "0x4162405E51BB99B0"
    (gpu,) = parse_amd_smi(
        json.dumps({"gpu_data": static}), json.dumps({"gpu_data": json.loads(AMD_SMI_METRIC)}), "rocm"
    )
    assert gpu.serial == "4162405e51bb99b0"
    assert gpu.memory_total == 8176 * 2**20


def test_amd_smi_static_and_metric_must_list_the_same_gpus() -> None:
    metric = json.loads(AMD_SMI_METRIC)
    metric[0]["gpu"] = 1
    with pytest.raises(
        AcceleratorOutputError, match=r"amd-smi.*static lists GPUs \[0\] but metric lists \[1\]"
    ):
        parse_amd_smi(AMD_SMI_STATIC, json.dumps(metric), "rocm")


def test_amd_smi_hygon_vendor_is_left_to_dtk(tmp_path: Path) -> None:
    static = json.loads(AMD_SMI_STATIC)
    static[0]["asic"]["vendor_id"] = "0x1d94"
    tools = FakeTools(tmp_path / "bin")
    tools.add("amd-smi", {"static --json": json.dumps(static), "metric --json": AMD_SMI_METRIC})
    with pytest.raises(AcceleratorNotPresent, match="amd-smi lists no AMD GPU"):
        RocmAccelerator().detect(tools.options())


def test_amd_smi_preferred_over_rocm_smi(tmp_path: Path) -> None:
    """With both tools installed the current one, amd-smi, is read."""
    tools = RECORDINGS.recording("rx7800xt-6.2.4").fake_tools(tmp_path)
    tools.add("amd-smi", {"static --json": AMD_SMI_STATIC, "metric --json": AMD_SMI_METRIC})
    (device,) = RocmAccelerator().detect(tools.options())
    assert device.extra == {"source": "amd-smi"}
