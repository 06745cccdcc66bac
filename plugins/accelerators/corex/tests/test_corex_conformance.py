"""The accelerator conformance suite for the CoreX plugin, on ixsmi output published by gpustack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gpustack_accelerator_corex import QUERY, CorexAccelerator

from gpustack_core import Accelerator, DetectOptions, Device
from gpustack_core.testing import AcceleratorSuite, Capabilities, FakeTools, emulated_runtime_probe

CSV = (Path(__file__).parent / "fixtures" / "ixsmi-query-gpu.csv").read_text()


def _tools(directory: Path, text: str = CSV, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("ixsmi", {" ".join(QUERY): text}, **kwargs)  # type: ignore[arg-type]
    return tools


class TestCorexRecorded(AcceleratorSuite):
    """Two Iluvatar boards."""

    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second Iluvatar tool was recorded",
    )

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        return CorexAccelerator()

    @pytest.fixture
    def detect_options(self, tmp_path: Path) -> DetectOptions:
        return _tools(tmp_path / "bin").options()

    @pytest.fixture
    def child_probe(self, devices: list[Device]) -> Callable[[dict[str, str]], list[str]]:
        return emulated_runtime_probe("CUDA_VISIBLE_DEVICES", devices)

    @pytest.fixture
    def absent_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return CorexAccelerator(), FakeTools(tmp_path / "empty").options()

    @pytest.fixture
    def hung_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return CorexAccelerator(), _tools(tmp_path / "hung", hang_s=60, spawn_child=True).options(
            timeout_s=0.5
        )

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        return (
            CorexAccelerator(),
            _tools(tmp_path / "garbled", "0, Iluvatar MR-V50, lots, 116 MiB, 0 %, 30 C\n").options(),
            "ixsmi",
        )


def test_recorded_boards(tmp_path: Path) -> None:
    devices = CorexAccelerator().detect(_tools(tmp_path / "bin").options())
    assert [(d.index, d.name) for d in devices] == [(0, "Iluvatar MR-V50"), (1, "Iluvatar MR-V100")]
    assert devices[1].memory_total_bytes == 32768 * 2**20
    assert devices[1].memory_used_bytes == 27996 * 2**20
    assert devices[1].temperature_celsius == 36.0
    assert devices[0].utilization_percent == 0.0
    assert CorexAccelerator().visibility_env(devices[1:]) == {"CUDA_VISIBLE_DEVICES": "1"}
