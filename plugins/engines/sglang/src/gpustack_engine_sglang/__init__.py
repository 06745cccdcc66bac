"""gpustack-core engine plugin for SGLang (``python -m sglang.launch_server``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.errors import EngineArgumentError
from gpustack_core.types import ModelCategory, ModelFormat

from ._presets import preset_args

if TYPE_CHECKING:
    from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec


__all__ = ["SglangEngine", "gpustack_register_engines"]

OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--model-path", "--host", "--port", "--served-model-name",
        "--tensor-parallel-size", "--tp-size", "--is-embedding",
        "--dist-init-addr", "--nccl-init-addr", "--nnodes", "--node-rank",
    }
)  # fmt: skip
CONTEXT_FLAGS: frozenset[str] = frozenset({"--context-length"})
CATEGORIES = (ModelCategory.LLM, ModelCategory.VLM, ModelCategory.EMBEDDING)


class SglangEngine(engines.VenvEngine):
    """SGLang's OpenAI-compatible server for safetensors models on NVIDIA and AMD GPUs.

    ``--tp-size`` is the total over all nodes; several nodes run the same command with their
    ``--node-rank`` and the rank-0 node's ``--dist-init-addr``; only rank 0 serves HTTP.
    """

    name = "sglang"
    owned_flags = OWNED_FLAGS
    requirements = ("sglang[all]=={version}",)
    program = "python"  # python -m sglang.launch_server; no program of its own on PATH

    def capabilities(self) -> EngineCapabilities:
        """safetensors; LLM, VLM, embedding; NVIDIA and AMD; TP and multi-node; presets: modes,
        EAGLE-3/MTP/n-gram/draft-model speculation, HiCache (see _presets.py)."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=CATEGORIES,
            vendors=("nvidia", "amd"),
            tensor_parallel=True,
            multi_worker=True,
            multi_worker_order="head_first",
            openai_endpoints=(*engines.TEXT_ENDPOINTS, "/v1/embeddings"),
            performance_modes=("latency", "throughput"),
            speculative_methods=("eagle3", "mtp", "ngram", "draft_model"),
            kv_cache_extensions=("hicache",),
        )

    def default_version(self) -> str:
        """The SGLang release whose CLI the recorded flags come from (0.4.1 stays installable)."""
        return "0.5.23"

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """One ``sglang.launch_server`` per node."""
        deployment = request.deployment
        extra = engines.user_args(self, request, CONTEXT_FLAGS)
        engines.check_served(self, request)
        model_dir = engines.model_directory(self, request)
        tp = max(1, len(engines.accelerated_devices(request))) * request.node_count
        argv = [request.installation.executable, "-m", "sglang.launch_server", "--model-path", model_dir]
        argv += ["--host", request.host, "--port", str(request.port)]
        argv += ["--served-model-name", engines.served_model_name(request), "--tp-size", str(tp)]
        if deployment.context_length:
            argv += ["--context-length", str(deployment.context_length)]
        if deployment.category == ModelCategory.EMBEDDING:
            argv.append("--is-embedding")
        if request.node_count > 1:
            if not request.head_address:
                raise EngineArgumentError("multi-node SGLang needs the rank-0 node's address (head_address)")
            argv += ["--nnodes", str(request.node_count), "--node-rank", str(request.node_rank)]
            argv += ["--dist-init-addr", request.head_address]
        preset, preset_env = preset_args(deployment.performance, request.installation.version)
        argv += preset
        return engines.make_launch_spec(
            request,
            (*argv, *extra),
            extra_env=preset_env,
            readiness_mode="http" if request.node_rank == 0 else "process",  # only rank 0 serves HTTP
            ready_timeout_s=1800.0,
        )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the SGLang engine."""
    register(SglangEngine())
