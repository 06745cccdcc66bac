"""gpustack-core engine plugin for vLLM (``vllm serve``), multi-node through Ray."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.errors import EngineArgumentError
from gpustack_core.types import ModelCategory, ModelFormat

from ._presets import preset_args

if TYPE_CHECKING:
    from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec


__all__ = ["VllmEngine", "gpustack_register_engines"]

#: Every spelling of the flags the plugin sets (arg_utils.py / cli_args.py, see _cli.py).
OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host", "--port", "--model", "--served-model-name", "--task", "--runner", "--convert",
        "--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
        "--distributed-executor-backend",
    }
)  # fmt: skip
CONTEXT_FLAGS: frozenset[str] = frozenset({"--max-model-len"})
#: vLLM's --task for each category it serves (arg_utils.py TaskOption: generate, embed, score, ...).
TASKS: dict[ModelCategory, str] = {
    ModelCategory.LLM: "generate",
    ModelCategory.VLM: "generate",
    ModelCategory.EMBEDDING: "embed",
    ModelCategory.RERANK: "score",
}
#: From 0.33.0 (the default; ``vllm/config/model.py``, ``vllm/config/scheduler.py``): ``--runner``
#: ``generate``/``pooling`` and ``--convert`` ``embed``/``classify`` replace ``--task``.
RUNNER_ARGS: dict[ModelCategory, tuple[str, ...]] = {
    ModelCategory.LLM: ("--runner", "generate"),
    ModelCategory.VLM: ("--runner", "generate"),
    ModelCategory.EMBEDDING: ("--runner", "pooling", "--convert", "embed"),
    ModelCategory.RERANK: ("--runner", "pooling", "--convert", "classify"),
}
#: The first version the plugin emits ``--runner``/``--convert`` for (older ones get ``--task``).
RUNNER_VERSION = "0.33.0"
DEFAULT_RAY_PORT = 6379


class VllmEngine(engines.VenvEngine):
    """vLLM's OpenAI-compatible server for safetensors models on NVIDIA, AMD and MetaX GPUs.

    On MetaX the ``vllm`` program must be MetaX's build (upstream vLLM with the vLLM-MetaX platform
    plugin and ``mcoplib``, from MetaX's images or wheels; not on PyPI): the same ``vllm serve`` CLI,
    with devices chosen by ``MACA_VISIBLE_DEVICES``. A pip-installed upstream vLLM cannot drive MACA.

    One node: ``--tensor-parallel-size`` = the node's devices. Several nodes: tensor parallel
    within a node, pipeline parallel across nodes, ``--distributed-executor-backend ray``; rank 0
    starts the Ray head then ``vllm serve``, the other ranks join with ``ray start --block``.
    """

    name = "vllm"
    owned_flags = OWNED_FLAGS
    requirements = ("vllm=={version}", "ray[default]")  # ray for multi-node
    program = system_program = "vllm"

    def capabilities(self) -> EngineCapabilities:
        """safetensors; LLM, VLM, embedding, rerank; NVIDIA, AMD and MetaX; TP, PP and multi-node;
        presets: latency/throughput, EAGLE-3/MTP/n-gram/draft-model speculation, LMCache (_presets.py)."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=tuple(TASKS),
            vendors=("nvidia", "amd", "metax"),
            tensor_parallel=True,
            pipeline_parallel=True,
            multi_worker=True,
            multi_worker_order="head_first",
            cpu_offload=True,
            openai_endpoints=(*engines.TEXT_ENDPOINTS, "/v1/embeddings", "/v1/score"),
            performance_modes=("latency", "throughput"),
            speculative_methods=("eagle3", "mtp", "ngram", "draft_model"),
            kv_cache_extensions=("lmcache",),
        )

    def default_version(self) -> str:
        """The vLLM release whose CLI the recorded flags come from (0.7.3 stays installable)."""
        return "0.33.0"

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``vllm serve`` on rank 0 (behind ``ray start --head`` when multi-node), ``ray start`` on others."""
        deployment = request.deployment
        extra = engines.user_args(self, request, CONTEXT_FLAGS)
        engines.check_served(self, request)
        executable = Path(request.installation.executable)
        ray = str(executable.parent / "ray")
        ray_port = _ray_port(request.head_address)
        if request.node_rank > 0:
            if not request.head_address:
                raise EngineArgumentError("a vLLM worker node needs the head's address (head_address)")
            head_host = request.head_address.rsplit(":", 1)[0]
            join = (ray, "start", "--address", f"{head_host}:{ray_port}", "--block")
            return engines.make_launch_spec(request, join, health_path=None, readiness_mode="process")
        serve = [str(executable), "serve", engines.model_directory(self, request), "--host", request.host]
        serve += ["--port", str(request.port), "--served-model-name", engines.served_model_name(request)]
        if engines.version_sort_key(request.installation.version) >= engines.version_sort_key(RUNNER_VERSION):
            serve += RUNNER_ARGS[deployment.category]
        else:
            serve += ["--task", TASKS[deployment.category]]
        serve += ["--tensor-parallel-size", str(max(1, len(engines.accelerated_devices(request))))]
        serve += ["--pipeline-parallel-size", str(request.node_count)]
        if deployment.context_length:
            serve += ["--max-model-len", str(deployment.context_length)]
        preset, preset_env = preset_args(deployment.performance, request.installation.version)
        serve += preset
        if request.node_count == 1:
            return engines.make_launch_spec(
                request, (*serve, *extra), extra_env=preset_env, ready_timeout_s=1800.0
            )
        serve += ["--distributed-executor-backend", "ray", *extra]
        head = shlex.join([ray, "start", "--head", "--port", str(ray_port)])
        argv = ("/bin/sh", "-c", f"{head} && exec {shlex.join(serve)}")
        env = {"RAY_ADDRESS": f"127.0.0.1:{ray_port}", **preset_env}
        return engines.make_launch_spec(request, argv, extra_env=env, ready_timeout_s=1800.0)


def _ray_port(head_address: str | None) -> int:
    if head_address and ":" in head_address:
        try:
            return int(head_address.rsplit(":", 1)[1])
        except ValueError as exc:
            raise EngineArgumentError(f"invalid head address {head_address!r}: expected host:port") from exc
    return DEFAULT_RAY_PORT


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the vLLM engine."""
    register(VllmEngine())
