"""The accelerator conformance suite against this machine's NVIDIA GPUs: NVML detection checked
against nvidia-smi and against PyTorch in a child process, which is also the visibility probe.
Every test skips where NVML finds no GPU (see docs/conformance/cuda-h200.md for a run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from gpustack_accelerator_cuda import CudaAccelerator

from gpustack_core import Accelerator, DetectOptions, Device
from gpustack_core.errors import AcceleratorNotPresent
from gpustack_core.testing import AcceleratorSuite, ConformanceManifest, FakeTools, IndependentDevice

MANIFEST = ConformanceManifest.beside(__file__)
#: the recorded nvidia-smi, served hung and garbled for those two checks
RECORDED = MANIFEST.recording("h200")

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
class TestCudaRealHardware(AcceleratorSuite):
    """The suite against the machine's real NVIDIA GPUs, with the recorded suite's capabilities."""

    capabilities = MANIFEST.capabilities

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        if not _real_devices():
            pytest.skip("no NVIDIA GPU reachable through NVML on this machine")
        return CudaAccelerator()

    @pytest.fixture
    def independent_views(self, devices: list[Device]) -> dict[str, list[IndependentDevice]]:
        smi = CudaAccelerator(nvml=None).detect(DetectOptions())
        views = {"nvidia-smi -q -x": [IndependentDevice.of(d) for d in smi]}
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
    def hung_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        tools = RECORDED.fake_tools(tmp_path / "hung", hang_s=60, spawn_child=True)
        return CudaAccelerator(nvml=None), tools.options(timeout_s=0.5)

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        tools = RECORDED.fake_tools(tmp_path / "garbled", garbled=True)
        return CudaAccelerator(nvml=None), tools.options(), "nvidia-smi"
