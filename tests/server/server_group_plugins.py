"""Plugins for the instance-group tests: a test accelerator that reports one device of a chosen
size (so the scheduler must split a model across workers), and an engine whose rank >= 1 runs a
TCP stand-in for llama.cpp's ``rpc-server`` (``group_rpc_stand_in.py``) and whose head
(``group_head_stand_in.py``) connects to every ``--rpc`` server before serving the fake OpenAI
engine, and exits when one of them goes away, as ``llama-server`` does.

The stand-ins keep the group tests fast and not slow-marked, and shape groups of GPUs (which the
test machine lacks); the launch order, addresses, reports and group lifecycle they exercise are the
real ones. Real llama.cpp over RPC (CPU groups) runs in ``test_server_llama_rpc.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from gpustack_core import hookimpl
from gpustack_core.contracts import Accelerator, Engine
from gpustack_core.plugins import PluginHost
from gpustack_core.types import (
    DetectOptions,
    Device,
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    HttpProbe,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
)

__all__ = ["USED_BYTES", "GroupEngine", "HeadFirstEngine", "TestGpu", "make_group_host"]

HERE = Path(__file__).resolve().parent
#: Device memory the head (rank 0) and a part (rank >= 1) declare they use.
USED_BYTES = (3_000_000, 2_000_000)


class TestGpu(Accelerator):
    """One device of ``memory_bytes``, vendor ``testgpu``."""

    name = "testgpu"
    vendor = "testgpu"

    def __init__(self, memory_bytes: int, uuid: str) -> None:
        self.memory_bytes = memory_bytes
        self.uuid = uuid

    def detect(self, options: DetectOptions) -> list[Device]:
        return [
            Device(
                accelerator="testgpu",
                vendor="testgpu",
                index=0,
                uuid=self.uuid,
                name="Test GPU",
                memory_total_bytes=self.memory_bytes,
                memory_used_bytes=0,
            )
        ]

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        return {"TESTGPU_VISIBLE_DEVICES": ",".join(str(d.index) for d in devices)}

    def process_memory(
        self, devices: Sequence[Device], pids: Collection[int], options: DetectOptions
    ) -> dict[int, int] | None:
        """What the processes declare in ``TESTGPU_USED_BYTES`` (read from ``/proc/<pid>/environ``),
        the way a vendor tool reports each process's use of a device."""
        used = 0
        for pid in pids:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in environ:
                if item.startswith(b"TESTGPU_USED_BYTES="):
                    used += int(item.split(b"=", 1)[1])
        return {d.index: used for d in devices}


class GroupEngine(Engine):
    """llama.cpp's group shape with stand-in processes: subordinates first, no weights on them."""

    name = "fake-group"
    owned_flags = frozenset({"--port", "--rpc"})

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,),
            categories=(ModelCategory.LLM,),
            vendors=("testgpu",),
            pipeline_parallel=True,
            multi_worker=True,
            subordinates_need_weights=False,
        )

    def default_version(self) -> str:
        return "1.0"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        return [
            EngineInstallation(engine=self.name, version="1.0", executable=sys.executable, origin="located")
        ]

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        served = request.deployment.served_model_name or request.deployment.name
        python = request.installation.executable
        env = dict(request.visibility_env)
        env["TESTGPU_USED_BYTES"] = str(USED_BYTES[min(request.node_rank, 1)])
        if request.node_rank > 0:
            argv: tuple[str, ...] = (
                python,
                str(HERE / "group_rpc_stand_in.py"),
                "--host",
                request.host,
                "--port",
                str(request.port),
            )
            return LaunchSpec(
                argv=argv, env=env, port=request.port, served_model_name=served, readiness_mode="tcp",
                probe_host="127.0.0.1" if request.host in ("0.0.0.0", "") else request.host,
                ready_timeout_s=30,
            )  # fmt: skip
        if not request.model_paths:
            raise ValueError("the head needs the model file")
        argv = (python, str(HERE / "group_head_stand_in.py"), "--port", str(request.port), "--name", served)
        argv += ("--model", request.model_paths[0], "--host", request.host)
        if request.rpc_servers:
            argv += ("--rpc", ",".join(request.rpc_servers))
        return LaunchSpec(
            argv=argv,
            env=env,
            port=request.port,
            served_model_name=served,
            readiness=HttpProbe(path="/_fake/stats"),
            health=HttpProbe(path="/_fake/stats", timeout_s=2.0),
            ready_timeout_s=30,
        )


class HeadFirstEngine(GroupEngine):
    """The Ray / torch-distributed shape with stand-ins: the head starts first at ``head_address``,
    the other ranks join it; every rank reads the weights."""

    name = "fake-head-first"

    def capabilities(self) -> EngineCapabilities:
        return (
            super()
            .capabilities()
            .model_copy(update={"multi_worker_order": "head_first", "subordinates_need_weights": True})
        )

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        if not request.head_address or not request.model_paths:
            raise ValueError("every rank needs the head address and the model file")
        # like MindIE's rank table: every rank needs the whole group, the head's address first
        ranks = [m.rank for m in request.group]
        if ranks != list(range(request.node_count)) or not all(m.devices for m in request.group):
            raise ValueError(f"every rank needs the whole group with its placed devices, got {request.group}")
        if request.group[0].address != request.head_address.rsplit(":", 1)[0]:
            raise ValueError(f"the group's head {request.group[0]} is not at {request.head_address}")
        served = request.deployment.served_model_name or request.deployment.name
        python = request.installation.executable
        env = {**request.visibility_env, "TESTGPU_USED_BYTES": str(USED_BYTES[min(request.node_rank, 1)])}
        if request.node_rank > 0:
            argv: tuple[str, ...] = (
                python,
                str(HERE / "group_join_stand_in.py"),
                "--head",
                request.head_address,
            )
            argv += ("--rank", str(request.node_rank))
            return LaunchSpec(
                argv=argv, env=env, port=request.port, served_model_name=served, readiness_mode="process"
            )
        argv = (python, str(HERE / "group_head_stand_in.py"), "--port", str(request.port), "--name", served)
        argv += ("--model", request.model_paths[0], "--host", request.host)
        argv += ("--rendezvous", request.head_address, "--nodes", str(request.node_count))
        return LaunchSpec(
            argv=argv,
            env=env,
            port=request.port,
            served_model_name=served,
            readiness=HttpProbe(path="/_fake/stats"),
            health=HttpProbe(path="/_fake/stats", timeout_s=2.0),
            ready_timeout_s=60,
        )


class _Plugin:
    def __init__(self, memory_bytes: int, uuid: str) -> None:
        self.memory_bytes = memory_bytes
        self.uuid = uuid

    @hookimpl
    def gpustack_register_accelerators(self, register: Any) -> None:
        register(TestGpu(self.memory_bytes, self.uuid))

    @hookimpl
    def gpustack_register_engines(self, register: Any) -> None:
        register(GroupEngine())
        register(HeadFirstEngine())


def make_group_host(memory_bytes: int, uuid: str) -> PluginHost:
    """Installed plugins plus the test accelerator (one device of ``memory_bytes``) and the group
    engine."""
    plugin = _Plugin(memory_bytes, uuid)
    return PluginHost(
        plugins=[("accelerators", "testgpu", plugin), ("engines", "fake-group", plugin)], environ={}
    )
