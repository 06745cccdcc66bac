"""What the DTK plugin reads from the recorded Hygon output, and the AMD cards it leaves to ROCm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpustack_accelerator_dtk import DtkAccelerator, repair_hy_smi_json

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


HY_SMI = (Path(__file__).parent / "fixtures" / "hy-smi-bw-2cards.json").read_text()


def test_recorded_hy_smi_json_really_misses_commas() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting ',' delimiter") as info:
        json.loads(HY_SMI)
    assert info.value.pos == 121  # where the source's own test says strict parsing stops
    repaired = json.loads(repair_hy_smi_json(HY_SMI))
    assert repaired["card0"]["Average GFX Core Power (W)"] == "20.0"
    assert repaired["card1"]["vram Total Used Memory (MiB)"] == "64104"


def test_repair_leaves_valid_json_alone() -> None:
    valid = json.dumps({"card0": {"a": 'x""y', "b": "1"}})
    assert repair_hy_smi_json(valid) == valid


def test_recorded_hy_smi_fields(tmp_path: Path) -> None:
    options = RECORDINGS.recording("hygon-bw-hy-smi").fake_tools(tmp_path).options()
    devices = DtkAccelerator().detect(options)
    assert [(d.index, d.uuid, d.name) for d in devices] == [
        (0, "hygon-card0", "BW"),
        (1, "hygon-card1", "BW"),
    ]
    assert devices[0].memory_total_bytes == 65520 * 2**20
    assert [d.memory_used_bytes for d in devices] == [64169 * 2**20, 64104 * 2**20]
    assert [d.temperature_celsius for d in devices] == [54.0, 52.0]
    assert devices[0].utilization_percent == 0.0
    assert devices[0].extra == {"card": "0", "source": "hy-smi"}
    assert DtkAccelerator().visibility_env(devices[1:]) == {"HIP_VISIBLE_DEVICES": "1"}


def test_rocm_smi_preferred_over_hy_smi(tmp_path: Path) -> None:
    """DTK releases that ship both: the rocm-smi + rocminfo path gives uuids and versions."""
    tools = RECORDINGS.recording("hygon-dcu-24.04.3").fake_tools(tmp_path)
    tools.add("hy-smi", HY_SMI)
    (device,) = DtkAccelerator().detect(tools.options())
    assert "source" not in device.extra
