"""gpustack-core engine plugin for llama-box (GPUStack's llama.cpp/stable-diffusion.cpp server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpustack_core import Engine, hookimpl
from gpustack_core.engines import (
    accelerated_devices,
    launch_env,
    list_installations,
    located_on_path,
    probe_host,
    refuse_owned_flags,
    remove_installation,
    served_model_name,
)
from gpustack_core.errors import EngineArgumentError
from gpustack_core.types import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    HttpProbe,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
)

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


class LlamaBoxEngine(Engine):
    """llama-box serving GGUF models (text, embeddings, rerank, images), RPC across workers.

    Rank 0 runs the server (``--rpc`` lists the subordinate workers' RPC servers); rank > 0 runs
    ``llama-box --rpc-server-host H --rpc-server-port P`` (llama-box's built-in RPC server mode).
    llama-box is distributed as release archives, not on a package index: install it yourself and
    put it on ``PATH`` (or under ``<engines_dir>/llama-box/<version>/`` with a marker file).
    """

    name = "llama-box"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """GGUF; LLM, VLM, embedding, rerank, image; CPU and GPU/NPU vendors; RPC multi-node."""
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,),
            categories=tuple(CATEGORY_FLAGS),
            vendors=("cpu", "nvidia", "amd", "apple", "ascend"),
            pipeline_parallel=True,
            multi_worker=True,
            cpu_offload=True,
            openai_endpoints=(
                "/v1/models",
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/rerank",
                "/v1/images/generations",
            ),
        )

    def default_version(self) -> str:
        """The llama-box release this plugin targets."""
        return "0.0.140"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """``llama-box`` on PATH (version ``system``), then recorded installations."""
        return located_on_path(self.name, "llama-box") + list_installations(options, self.name)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete a recorded installation under the engines directory."""
        remove_installation(installation, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """The server on rank 0, the RPC server on the other ranks."""
        deployment = request.deployment
        owned = OWNED_FLAGS | (CONTEXT_FLAGS if deployment.context_length else frozenset())
        extra = refuse_owned_flags(self.name, deployment.extra_args, owned)
        exe = request.installation.executable
        gpus = accelerated_devices(request)
        if request.node_rank > 0:
            argv = [exe, "--rpc-server-host", request.host, "--rpc-server-port", str(request.port)]
            argv += ["--rpc-server-main-gpu", "0" if gpus else "-1", *extra]
            return _spec(request, argv, readiness_mode="tcp")
        if deployment.category not in CATEGORY_FLAGS:
            raise EngineArgumentError(
                f"engine 'llama-box' does not serve {deployment.category.value!r} models"
            )
        if not request.model_paths:
            raise EngineArgumentError("engine 'llama-box' needs the path of the GGUF file to serve")
        argv = [exe, "--host", request.host, "--port", str(request.port), "--model", request.model_paths[0]]
        argv += ["--alias", served_model_name(request)]
        if deployment.context_length:
            argv += ["--ctx-size", str(deployment.context_length)]
        claim = request.placement.claim
        if gpus or request.rpc_servers:
            layers = claim.offloaded_layers if claim.strategy == "partial_offload" else None
            argv += ["--gpu-layers", str(layers if layers is not None else 999)]
        else:
            argv += ["--gpu-layers", "0"]
        if len(gpus) > 1:
            shares = [c.memory_bytes for c in claim.devices]
            if len(shares) != len(gpus) or not all(shares):
                shares = [1] * len(gpus)
            argv += ["--tensor-split", ",".join(str(s) for s in shares)]
        if request.rpc_servers:
            argv += ["--rpc", ",".join(request.rpc_servers)]
        argv += [*CATEGORY_FLAGS[deployment.category], "--metrics", *extra]
        return _spec(
            request,
            argv,
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=5.0),
        )


def _spec(request: LaunchRequest, argv: list[str], **probes: Any) -> LaunchSpec:
    """The launch spec of ``argv`` with ``probes``; environment, port and names as for every rank."""
    return LaunchSpec(
        argv=tuple(argv),
        env=launch_env(request),
        port=request.port,
        probe_host=probe_host(request),
        served_model_name=served_model_name(request),
        **probes,
    )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the llama-box engine."""
    register(LlamaBoxEngine())
