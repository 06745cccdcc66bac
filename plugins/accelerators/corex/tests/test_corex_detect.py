"""What the CoreX plugin reads from the published ixsmi output, field by field."""

from __future__ import annotations

from pathlib import Path

from gpustack_accelerator_corex import CorexAccelerator

from gpustack_core.testing import ConformanceManifest

RECORDINGS = ConformanceManifest.beside(__file__)


def test_recorded_boards(tmp_path: Path) -> None:
    options = RECORDINGS.recording("mr-v50-mr-v100").fake_tools(tmp_path).options()
    devices = CorexAccelerator().detect(options)
    assert [(d.index, d.name) for d in devices] == [(0, "Iluvatar MR-V50"), (1, "Iluvatar MR-V100")]
    assert devices[1].memory_total_bytes == 32768 * 2**20
    assert devices[1].memory_used_bytes == 27996 * 2**20
    assert devices[1].temperature_celsius == 36.0
    assert devices[0].utilization_percent == 0.0
    assert CorexAccelerator().visibility_env(devices[1:]) == {"CUDA_VISIBLE_DEVICES": "1"}
