"""The accelerator conformance suite for the CUDA plugin on the recorded H200 (fixtures/conformance.toml),
through NVML (conftest's FakeNvml serves the recorded NVML numbers) and through the nvidia-smi fallback."""

from __future__ import annotations

from typing import Any

import pytest
from gpustack_accelerator_cuda import CudaAccelerator

from gpustack_core import Accelerator, DetectOptions
from gpustack_core.testing import IndependentDevice, RecordedToolSuite


class TestCudaRecordedH200(RecordedToolSuite):
    """NVML finds the devices; the recorded nvidia-smi XML is the independent source."""

    def make_accelerator(self) -> Accelerator:
        """Without NVML, for the absent, hung and garbled nvidia-smi checks."""
        return CudaAccelerator(nvml=None)

    @pytest.fixture
    def accelerator(self, fake_nvml: Any) -> Accelerator:
        return CudaAccelerator(nvml=fake_nvml())

    @pytest.fixture
    def independent_views(self, detect_options: DetectOptions) -> dict[str, list[IndependentDevice]]:
        smi = CudaAccelerator(nvml=None).detect(detect_options)
        return {"nvidia-smi -q -x (recorded)": [IndependentDevice.of(d) for d in smi]}


class TestCudaSmiFallback(TestCudaRecordedH200):
    """NVML fails to load: everything comes from the recorded nvidia-smi XML; NVML's recorded
    numbers are the independent source."""

    @pytest.fixture
    def accelerator(self, fake_nvml: Any) -> Accelerator:
        return CudaAccelerator(nvml=fake_nvml(init_error="NVML Shared Library Not Found"))

    @pytest.fixture
    def independent_views(self, fake_nvml: Any) -> dict[str, list[IndependentDevice]]:
        nvml = CudaAccelerator(nvml=fake_nvml(), smi_fallback=False).detect(DetectOptions())
        return {"NVML (recorded)": [IndependentDevice.of(d) for d in nvml]}
