"""A pynvml-like object that returns numbers recorded through NVML on an H200.

The numbers come from ``tests/fixtures/SOURCE.md`` (the capture's README): nvidia-ml-py 13.610.43 on
the machine where ``nvidia-smi-q.xml`` was captured. Getters the capture did not record raise
``NVMLError`` (NOT_SUPPORTED), as NVML does for an unsupported query, so nothing here is invented.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


class NVMLError(Exception):
    """Stand-in for pynvml.NVMLError."""


class FakeNvml:
    """One recorded H200 (or the GPUs given), with init/shutdown counting."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[dict[str, Any]] | None = None, init_error: str | None = None) -> None:
        self.gpus = gpus if gpus is not None else [H200]
        self.init_error = init_error
        self.open = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError(self.init_error)
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        return self.gpus[index]

    def _get(self, handle: dict[str, Any], key: str) -> Any:
        if key not in handle:
            raise NVMLError("Not Supported")
        return handle[key]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> str:
        return str(self._get(h, "name"))

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:
        return str(self._get(h, "uuid"))

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        total, used = self._get(h, "memory")
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, Any]) -> tuple[int, int]:
        return tuple(self._get(h, "cc"))  # type: ignore[return-value]

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return SimpleNamespace(gpu=self._get(h, "util"), memory=0)

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> int:
        return int(self._get(h, "temp"))

    def nvmlDeviceGetPciInfo(self, h: dict[str, Any]) -> Any:
        return SimpleNamespace(busId=self._get(h, "pci"))

    def nvmlDeviceGetArchitecture(self, h: dict[str, Any]) -> int:
        return int(self._get(h, "arch"))

    def nvmlDeviceGetMigMode(self, h: dict[str, Any]) -> tuple[int, int]:
        return tuple(self._get(h, "mig_mode"))  # type: ignore[return-value]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: dict[str, Any]) -> int:
        return len(self._get(h, "migs"))

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> dict[str, Any]:
        for gpu in self.gpus:
            if gpu["uuid"] == uuid:
                return dict(gpu)
        raise NVMLError("Not Found")

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict[str, Any]) -> list[Any]:
        """The test's ``processes`` of a GPU record: (pid, usedGpuMemory or None) pairs (test input,
        not part of the recording)."""
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._get(h, "processes")]

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: dict[str, Any], i: int) -> dict[str, Any]:
        mig = self._get(h, "migs")[i]
        if mig is None:
            raise NVMLError("Not Found")
        return dict(mig)


#: the H200 as NVML reported it (fixture README)
H200: dict[str, Any] = {
    "name": "NVIDIA H200",
    "uuid": "GPU-f3d76b44-fda7-547e-b663-066d37ebc707",
    "memory": (150754820096, 644939776),
    "cc": (9, 0),
    "util": 0,
    "temp": 38,
    "pci": "00000000:00:06.0",
}


@pytest.fixture
def fake_nvml() -> type[FakeNvml]:
    """The FakeNvml class (test modules cannot import conftest by name under importlib mode)."""
    return FakeNvml


@pytest.fixture
def h200() -> dict[str, Any]:
    """The recorded H200 as a FakeNvml GPU record."""
    return dict(H200)
