"""llama.cpp across a mixed NVIDIA + AMD placement: the head (rank 0, one NVIDIA GPU) serves with
``--rpc`` to the AMD worker's ``rpc-server`` (rank 1); each worker's process sees only its own
vendor's device through that vendor's visibility variable, and the tensor split gives the remote
device (listed first, as llama.cpp orders RPC devices) the bytes claimed on its worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine

from gpustack_core.testing.engine_requests import assert_matches_golden, make_launch_request
from gpustack_core.types import DeviceClaim, DeviceRef, LaunchRequest, Placement, ResourceClaim

GOLDEN = Path(__file__).resolve().parent / "golden"
EXECUTABLE = "/opt/engines/llama.cpp/0.3.36/bin/llama-server"
_GIB = 1024**3


def _mixed_placement() -> Placement:
    return Placement(
        deployment="qwen",
        replica=0,
        worker="worker-0",
        devices=(
            DeviceRef(worker="worker-0", accelerator="cuda", index=0),
            DeviceRef(worker="worker-1", accelerator="rocm", index=0),
        ),
        claim=ResourceClaim(
            strategy="multi_worker",
            devices=(DeviceClaim(memory_bytes=12 * _GIB), DeviceClaim(memory_bytes=8 * _GIB)),
            host_memory_bytes=2 * _GIB,
        ),
        subordinate_workers=("worker-1",),
    )


def _request(rank: int) -> LaunchRequest:
    common = dict(executable=EXECUTABLE, version="0.3.36", device_count=1, node_count=2)
    if rank == 0:
        request = make_launch_request("llama.cpp", vendor="nvidia", rpc_servers=("10.0.0.2:50052",), **common)
    else:
        request = make_launch_request(
            "llama.cpp", vendor="amd", node_rank=1, host="10.0.0.2", port=50052, **common
        )
    return request.model_copy(update={"placement": _mixed_placement()})


@pytest.mark.parametrize(("rank", "golden"), [(0, "mixed-nvidia-amd-head"), (1, "mixed-nvidia-amd-worker")])
def test_mixed_vendor_rpc_placement_matches_golden(rank: int, golden: str) -> None:
    assert_matches_golden(LlamaCppEngine().launch_spec(_request(rank)), GOLDEN / f"{golden}.json")


def test_each_worker_sees_only_its_vendor_and_the_split_puts_the_remote_device_first() -> None:
    head = LlamaCppEngine().launch_spec(_request(0))
    worker = LlamaCppEngine().launch_spec(_request(1))
    assert head.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "HIP_VISIBLE_DEVICES" not in head.env
    assert worker.env["HIP_VISIBLE_DEVICES"] == "0"
    assert "CUDA_VISIBLE_DEVICES" not in worker.env
    argv = list(head.argv)
    assert argv[argv.index("--tensor-split") + 1] == f"{8 * _GIB},{12 * _GIB}"
    assert argv[argv.index("--rpc") + 1] == "10.0.0.2:50052"
    assert Path(worker.argv[0]).name == "rpc-server"
