"""gpustack-core engine plugin for SGLang (``python -m sglang.launch_server``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gpustack_core import Engine, hookimpl
from gpustack_core.engines import (
    accelerated_devices,
    install_venv,
    launch_env,
    list_installations,
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


class SglangEngine(Engine):
    """SGLang's OpenAI-compatible server for safetensors models on NVIDIA and AMD GPUs.

    ``--tp-size`` is the total over all nodes; several nodes run the same command with their
    ``--node-rank`` and the rank-0 node's ``--dist-init-addr``; only rank 0 serves HTTP.
    """

    name = "sglang"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """safetensors; LLM, VLM, embedding; NVIDIA and AMD; TP and multi-node."""
        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=CATEGORIES,
            vendors=("nvidia", "amd"),
            tensor_parallel=True,
            multi_worker=True,
            openai_endpoints=("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
        )

    def default_version(self) -> str:
        """The SGLang release line whose server_args.py the recorded flags come from."""
        return "0.4.1"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """Virtualenvs under the engines directory (SGLang has no program of its own on PATH)."""
        return list_installations(options, self.name)

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """``pip install "sglang[all]==<version>"`` into its own virtualenv; runs its ``python``."""
        return install_venv(self.name, version, [f"sglang[all]=={version}"], "python", options)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete a virtualenv this plugin installed."""
        remove_installation(installation, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """One ``sglang.launch_server`` per node."""
        deployment = request.deployment
        owned = OWNED_FLAGS | (CONTEXT_FLAGS if deployment.context_length else frozenset())
        extra = refuse_owned_flags(self.name, deployment.extra_args, owned)
        if deployment.category not in CATEGORIES:
            raise EngineArgumentError(f"engine 'sglang' does not serve {deployment.category.value!r} models")
        if not request.model_paths:
            raise EngineArgumentError("engine 'sglang' needs the local path of the model directory")
        model_dir = request.model_paths[0]
        if model_dir.endswith((".safetensors", ".json")):
            model_dir = str(Path(model_dir).parent)
        name = served_model_name(request)
        tp = max(1, len(accelerated_devices(request))) * request.node_count
        argv = [request.installation.executable, "-m", "sglang.launch_server", "--model-path", model_dir]
        argv += ["--host", request.host, "--port", str(request.port), "--served-model-name", name]
        argv += ["--tp-size", str(tp)]
        if deployment.context_length:
            argv += ["--context-length", str(deployment.context_length)]
        if deployment.category == ModelCategory.EMBEDDING:
            argv.append("--is-embedding")
        if request.node_count > 1:
            if not request.head_address:
                raise EngineArgumentError("multi-node SGLang needs the rank-0 node's address (head_address)")
            argv += ["--nnodes", str(request.node_count), "--node-rank", str(request.node_rank)]
            argv += ["--dist-init-addr", request.head_address]
        argv += extra
        serves_http = request.node_rank == 0
        return LaunchSpec(
            argv=tuple(argv),
            env=launch_env(request),
            port=request.port,
            probe_host=probe_host(request),
            served_model_name=name,
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=5.0),
            readiness_mode="http" if serves_http else "process",
            ready_timeout_s=1800.0,
        )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the SGLang engine."""
    register(SglangEngine())
