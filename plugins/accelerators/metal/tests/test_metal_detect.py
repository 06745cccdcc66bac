"""What the Metal plugin reads from the recorded system_profiler output, and key variants."""

from __future__ import annotations

import json
from pathlib import Path

from gpustack_accelerator_metal import MetalAccelerator, parse_displays

from gpustack_core.testing import ConformanceManifest

FIXTURES = Path(__file__).parent / "fixtures"
RECORDINGS = ConformanceManifest.beside(__file__)
M1 = (FIXTURES / "system_profiler-SPDisplaysDataType.m1-recorded.json").read_text()
MEMSIZE = (FIXTURES / "sysctl-n-hw.memsize.txt").read_text()


def test_recorded_m1_pro_one_gpu_not_three_displays(tmp_path: Path) -> None:
    (device,) = MetalAccelerator().detect(RECORDINGS.recording("m1-pro").fake_tools(tmp_path).options())
    assert device.name == "Apple M1 Pro"
    assert device.core_count == 16
    assert device.architecture == "metal3"
    assert device.memory_is_unified
    assert device.memory_total_bytes == int(MEMSIZE)
    assert device.memory_used_bytes is None
    assert MetalAccelerator().visibility_env([device]) == {}


def test_recorded_m1_name_comes_from_sppci_model_not_khw_name(tmp_path: Path) -> None:
    """``_name`` is the untranslated ``kHW_AppleM1Item`` key in this recording."""
    (device,) = MetalAccelerator().detect(RECORDINGS.recording("m1").fake_tools(tmp_path).options())
    assert device.name == "Apple M1"
    assert device.core_count == 7
    assert device.architecture == "metal3"


def test_macos11_metalfamily_key_is_read() -> None:
    """macOS 11 wrote ``spdisplays_metalfamily`` instead of ``spdisplays_mtlgpufamilysupport``."""
    data = json.loads(M1)
    entry = data["SPDisplaysDataType"][0]
    entry["spdisplays_metalfamily"] = "spdisplays_mtlgpufamilyapple7"
    del entry["spdisplays_mtlgpufamilysupport"]
    (device,) = parse_displays(json.dumps(data), MEMSIZE, "metal", "apple")
    assert device.architecture == "mtlgpufamilyapple7"


def test_non_apple_vendor_is_ignored() -> None:
    """An entry whose vendor is not ``sppci_vendor_Apple`` (an Intel Mac's GPU; value illustrative)."""
    data = json.loads(M1)
    data["SPDisplaysDataType"][0]["spdisplays_vendor"] = "sppci_vendor_intel"
    assert parse_displays(json.dumps(data), MEMSIZE, "metal", "apple") == []
