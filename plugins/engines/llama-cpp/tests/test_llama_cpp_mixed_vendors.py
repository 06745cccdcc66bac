"""llama.cpp across a mixed NVIDIA + AMD placement: the head (rank 0, one NVIDIA GPU) serves with
``--rpc`` to the AMD worker's ``rpc-server`` (rank 1); each worker's process sees only its own
vendor's device through that vendor's visibility variable, and the tensor split gives the remote
device (listed first, as llama.cpp orders RPC devices) the bytes claimed on its worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine
from gpustack_engine_llama_cpp._build import _rpc_target

from gpustack_core.errors import EngineNotInstalledError
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
    assert Path(worker.argv[0]).name == "ggml-rpc-server"


def _installed(tmp_path: Path, *programs: str) -> Path:
    """A native installation directory holding ``programs`` (empty executables)."""
    bin_dir = tmp_path / "llama.cpp" / "0.3.36" / "bin"
    bin_dir.mkdir(parents=True)
    for program in ("llama-server", *programs):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    return bin_dir / "llama-server"


@pytest.mark.parametrize("program", ["ggml-rpc-server", "rpc-server"])
def test_a_subordinate_runs_the_rpc_server_by_either_name(tmp_path: Path, program: str) -> None:
    executable = _installed(tmp_path, program)
    request = make_launch_request(
        "llama.cpp", executable=str(executable), version="0.3.36", vendor="cpu", node_rank=1, node_count=2
    )
    spec = LlamaCppEngine().launch_spec(request)
    assert spec.argv[0] == str(executable.parent / program)


def test_a_build_without_rpc_is_refused_with_the_way_out(tmp_path: Path) -> None:
    executable = _installed(tmp_path)
    request = make_launch_request(
        "llama.cpp", executable=str(executable), version="0.3.36", vendor="cpu", node_rank=1, node_count=2
    )
    with pytest.raises(EngineNotInstalledError, match=r"-DGGML_RPC=ON.*engines install llama.cpp 0.3.36"):
        LlamaCppEngine().launch_spec(request)


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (
            {"tools/rpc/CMakeLists.txt": "set(TARGET ggml-rpc-server)\n"},
            "ggml-rpc-server",
        ),
        ({"examples/rpc/CMakeLists.txt": "set(TARGET rpc-server)\n"}, "rpc-server"),
        ({}, "rpc-server"),
    ],
)
def test_the_rpc_target_is_read_from_the_tree(tmp_path: Path, layout: dict[str, str], expected: str) -> None:
    for relative, text in layout.items():
        (tmp_path / relative).parent.mkdir(parents=True)
        (tmp_path / relative).write_text(text)
    assert _rpc_target(tmp_path) == expected
