"""The accelerator conformance suite for the CUDA plugin: recorded H200 data here, the real GPU
where one is present (``TestCudaRealHardware`` skips elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpustack_accelerator_cuda import CudaAccelerator, parse_smi_xml

from gpustack_core import Accelerator, DetectOptions, Device
from gpustack_core.errors import AcceleratorNotPresent
from gpustack_core.testing import (
    AcceleratorSuite,
    Capabilities,
    FakeTools,
    IndependentDevice,
    emulated_runtime_probe,
)

FIXTURES = Path(__file__).parent / "fixtures"
XML = (FIXTURES / "nvidia-smi-q.xml").read_text()


def _smi_view(options: DetectOptions) -> list[IndependentDevice]:
    devices = CudaAccelerator(nvml=None).detect(options)
    return [IndependentDevice(d.uuid, d.name, d.memory_total_bytes, d.memory_used_bytes) for d in devices]


class _CudaSuite(AcceleratorSuite):
    """What the recorded and the real-hardware suites share: every capability, and a hung nvidia-smi."""

    capabilities = Capabilities(
        has_devices=True,
        independent_source=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
    )

    @pytest.fixture
    def hung_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        tools = FakeTools(tmp_path / "hung")
        tools.add("nvidia-smi", XML, hang_s=60, spawn_child=True)
        return CudaAccelerator(nvml=None), tools.options(timeout_s=0.5)


class TestCudaRecordedH200(_CudaSuite):
    """NVML through a fake returning the H200's recorded NVML numbers; nvidia-smi as a fake tool."""

    @pytest.fixture
    def tools(self, tmp_path: Path) -> FakeTools:
        tools = FakeTools(tmp_path / "bin")
        tools.add("nvidia-smi", {"-q -x": XML})
        return tools

    @pytest.fixture
    def accelerator(self, fake_nvml: Any) -> Accelerator:
        return CudaAccelerator(nvml=fake_nvml())

    @pytest.fixture
    def detect_options(self, tools: FakeTools) -> DetectOptions:
        return tools.options()

    @pytest.fixture
    def independent_views(self, detect_options: DetectOptions) -> dict[str, list[IndependentDevice]]:
        return {"nvidia-smi -q -x (recorded)": _smi_view(detect_options)}

    @pytest.fixture
    def child_probe(self, devices: list[Device]) -> Callable[[dict[str, str]], list[str]]:
        return emulated_runtime_probe("CUDA_VISIBLE_DEVICES", devices)

    @pytest.fixture
    def absent_setup(self, tmp_path: Path, fake_nvml: Any) -> tuple[Accelerator, DetectOptions]:
        empty = FakeTools(tmp_path / "empty")
        return CudaAccelerator(nvml=fake_nvml(init_error="NVML Shared Library Not Found")), empty.options()

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        tools = FakeTools(tmp_path / "garbled")
        tools.add("nvidia-smi", XML[: len(XML) // 2])
        return CudaAccelerator(nvml=None), tools.options(), "nvidia-smi"


class TestCudaSmiFallback(TestCudaRecordedH200):
    """The same suite with NVML unavailable: everything comes from the recorded nvidia-smi XML."""

    @pytest.fixture
    def accelerator(self, fake_nvml: Any) -> Accelerator:
        return CudaAccelerator(nvml=fake_nvml(init_error="NVML Shared Library Not Found"))

    @pytest.fixture
    def independent_views(self, fake_nvml: Any) -> dict[str, list[IndependentDevice]]:
        nvml = CudaAccelerator(nvml=fake_nvml(), smi_fallback=False).detect(DetectOptions())
        return {
            "NVML (recorded)": [
                IndependentDevice(d.uuid, d.name, d.memory_total_bytes, d.memory_used_bytes) for d in nvml
            ]
        }


# ---------------------------------------------------------------------------- real hardware

_TORCH_VIEW = """
import json, torch
out = []
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    out.append({"uuid": str(p.uuid), "name": p.name, "total": p.total_memory})
print(json.dumps(out))
"""


def _torch_child(env: dict[str, str] | None = None) -> list[dict[str, object]] | None:
    """Devices as PyTorch in a child process sees them, or None without PyTorch/CUDA."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    try:
        out = subprocess.run(
            [sys.executable, "-c", _TORCH_VIEW], env=child_env, capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    result: list[dict[str, object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _torch_uuid(raw: object, known: list[str]) -> str:
    text = str(raw)
    for uuid in known:
        if uuid.endswith(text):
            return uuid
    return text


def _real_devices() -> list[Device]:
    try:
        return CudaAccelerator(smi_fallback=False).detect(DetectOptions())
    except AcceleratorNotPresent:
        return []


@pytest.mark.device
class TestCudaRealHardware(_CudaSuite):
    """The suite against the machine's real NVIDIA GPUs (skipped where NVML finds none)."""

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        if not _real_devices():
            pytest.skip("no NVIDIA GPU reachable through NVML on this machine")
        return CudaAccelerator()

    @pytest.fixture
    def independent_views(self, devices: list[Device]) -> dict[str, list[IndependentDevice]]:
        views = {"nvidia-smi -q -x": _smi_view(DetectOptions())}
        torch_view = _torch_child()
        if torch_view is not None:
            known = [d.uuid for d in devices]
            views["torch.cuda (child process)"] = [
                IndependentDevice(_torch_uuid(t["uuid"], known), str(t["name"]), int(str(t["total"])))
                for t in torch_view
            ]
        print(f"independent sources compared: {sorted(views)}")  # shown by pytest -rA in the report
        return views

    @pytest.fixture
    def child_probe(self, devices: list[Device]) -> Callable[[dict[str, str]], list[str]]:
        if _torch_child() is None:
            pytest.skip("PyTorch with CUDA is not installed: no runtime to probe the child with")
        known = [d.uuid for d in devices]

        def probe(env: dict[str, str]) -> list[str]:
            seen = _torch_child(env)
            assert seen is not None, f"torch child failed under {env}"
            return [_torch_uuid(t["uuid"], known) for t in seen]

        return probe

    @pytest.fixture
    def absent_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return CudaAccelerator(nvml=None), FakeTools(tmp_path / "empty").options()

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        tools = FakeTools(tmp_path / "garbled")
        tools.add("nvidia-smi", "<nvidia_smi_log><gpu>")
        return CudaAccelerator(nvml=None), tools.options(), "nvidia-smi"


def test_recorded_nvml_and_smi_agree_on_the_h200(fake_nvml: Any) -> None:
    """The two recorded sources give the same device; used memory differs only by rounding to MiB."""
    nvml = CudaAccelerator(nvml=fake_nvml(), smi_fallback=False).detect(DetectOptions())[0]
    smi = parse_smi_xml(XML, "cuda", "nvidia")[0]
    assert (nvml.uuid, nvml.name, nvml.memory_total_bytes) == (smi.uuid, smi.name, smi.memory_total_bytes)
    assert nvml.memory_total_bytes == 150754820096 == 143771 * 2**20
    assert nvml.memory_used_bytes == 644939776
    assert smi.memory_used_bytes == (0 + 616) * 2**20
    assert nvml.compute_capability == "9.0"
    assert nvml.runtime_version == "13.0"
    assert nvml.driver_version == smi.driver_version == "580.159.04"
    assert smi.architecture == "hopper"
    assert smi.temperature_celsius == 40.0
