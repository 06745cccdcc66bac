"""gpustack-core engine plugin for llama-box (GPUStack's llama.cpp/stable-diffusion.cpp server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.types import ModelCategory, ModelFormat

if TYPE_CHECKING:
    from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec


__all__ = ["LlamaBoxEngine", "gpustack_register_engines"]

OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host", "--port", "-m", "--model", "-a", "--alias",
        "-ngl", "--gpu-layers", "--n-gpu-layers", "-ts", "--tensor-split", "--rpc",
        "--embeddings", "--rerank", "--images",
        "--rpc-server-host", "--rpc-server-port", "--rpc-server-main-gpu",
    }
)  # fmt: skip
CONTEXT_FLAGS: frozenset[str] = frozenset({"-c", "--ctx-size"})
CATEGORY_FLAGS: dict[ModelCategory, tuple[str, ...]] = {
    ModelCategory.LLM: (),
    ModelCategory.VLM: (),
    ModelCategory.EMBEDDING: ("--embeddings",),
    ModelCategory.RERANK: ("--rerank",),
    ModelCategory.IMAGE: ("--images",),
}


class LlamaBoxEngine(engines.VersionedEngine):
    """llama-box serving GGUF models (text, embeddings, rerank, images), RPC across workers.

    Rank 0 runs the server (``--rpc`` lists the subordinate workers' RPC servers); rank > 0 runs
    ``llama-box --rpc-server-host H --rpc-server-port P`` (llama-box's built-in RPC server mode).
    llama-box is distributed as release archives, not on a package index: install it yourself and
    put it on ``PATH`` (or under ``<engines_dir>/llama-box/<version>/`` with a marker file).
    """

    name = "llama-box"
    owned_flags = OWNED_FLAGS
    system_program = "llama-box"

    def capabilities(self) -> EngineCapabilities:
        """GGUF; LLM, VLM, embedding, rerank, image; CPU and GPU/NPU vendors; RPC multi-node."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.GGUF,),
            categories=tuple(CATEGORY_FLAGS),
            vendors=("cpu", "nvidia", "amd", "apple", "ascend"),
            pipeline_parallel=True,
            multi_worker=True,
            subordinates_need_weights=False,
            cpu_offload=True,
            openai_endpoints=(
                *engines.TEXT_ENDPOINTS,
                "/v1/embeddings",
                "/v1/rerank",
                "/v1/images/generations",
            ),
        )

    def default_version(self) -> str:
        """The llama-box release this plugin targets."""
        return "0.0.140"

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """The server on rank 0, the RPC server on the other ranks."""
        deployment = request.deployment
        extra = engines.user_args(self, request, CONTEXT_FLAGS)
        exe = request.installation.executable
        if request.node_rank > 0:
            argv = [exe, "--rpc-server-host", request.host, "--rpc-server-port", str(request.port)]
            argv += ["--rpc-server-main-gpu", "0" if engines.accelerated_devices(request) else "-1", *extra]
            return engines.make_launch_spec(request, argv, health_path=None, readiness_mode="tcp")
        engines.check_served(self, request)
        model = engines.model_path(self, request, "the GGUF file to serve")
        argv = [exe, "--host", request.host, "--port", str(request.port), "--model", model]
        argv += ["--alias", engines.served_model_name(request)]
        if deployment.context_length:
            argv += ["--ctx-size", str(deployment.context_length)]
        argv += ["--gpu-layers", str(engines.gpu_layers(request))]
        split = engines.tensor_split(request)
        if split is not None:
            argv += ["--tensor-split", split]
        if request.rpc_servers:
            argv += ["--rpc", ",".join(request.rpc_servers)]
        argv += [*CATEGORY_FLAGS[deployment.category], "--metrics", *extra]
        return engines.make_launch_spec(request, argv)


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the llama-box engine."""
    register(LlamaBoxEngine())
