"""gpustack-core engine plugin for TensorRT-LLM's OpenAI server (``trtllm-serve``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gpustack_core import Engine, hookimpl
from gpustack_core.engines import (
    accelerated_devices,
    install_venv,
    launch_env,
    list_installations,
    located_on_path,
    probe_host,
    refuse_owned_flags,
    remove_installation,
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

__all__ = ["TrtllmEngine", "gpustack_register_engines"]

OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host", "--port", "--backend",
        "--tensor_parallel_size", "--tp_size", "--pipeline_parallel_size", "--pp_size",
    }
)  # fmt: skip
CONTEXT_FLAGS: frozenset[str] = frozenset({"--max_seq_len"})
CATEGORIES = (ModelCategory.LLM, ModelCategory.VLM)


class TrtllmEngine(Engine):
    """``trtllm-serve serve MODEL`` with the PyTorch backend, tensor parallel over one node's GPUs.

    trtllm-serve has no served-model-name option at the recorded version: it serves the model
    under the ``MODEL`` argument, so the spec's ``served_model_name`` is the model path (the
    server's proxy maps the deployment's name to it). Multi-node runs need ``mpirun`` and are
    not offered.
    """

    name = "trtllm"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """safetensors; LLM and VLM; NVIDIA; TP and PP within one node."""
        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=CATEGORIES,
            vendors=("nvidia",),
            tensor_parallel=True,
            pipeline_parallel=True,
            openai_endpoints=("/v1/models", "/v1/chat/completions", "/v1/completions"),
        )

    def default_version(self) -> str:
        """The TensorRT-LLM release this plugin targets."""
        return "1.0.0"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """``trtllm-serve`` on PATH (version ``system``), then virtualenvs under the engines directory."""
        return located_on_path(self.name, "trtllm-serve") + list_installations(options, self.name)

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """``pip install tensorrt_llm==<version>`` into its own virtualenv (needs CUDA and MPI libraries)."""
        return install_venv(self.name, version, [f"tensorrt_llm=={version}"], "trtllm-serve", options)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete a virtualenv this plugin installed."""
        remove_installation(installation, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``trtllm-serve serve MODEL --host --port --backend pytorch --tp_size N --pp_size 1``."""
        deployment = request.deployment
        owned = OWNED_FLAGS | (CONTEXT_FLAGS if deployment.context_length else frozenset())
        extra = refuse_owned_flags(self.name, deployment.extra_args, owned)
        if deployment.category not in CATEGORIES:
            raise EngineArgumentError(f"engine 'trtllm' does not serve {deployment.category.value!r} models")
        if request.node_count > 1:
            raise EngineArgumentError("engine 'trtllm' runs on one worker; multi-node needs mpirun")
        if not request.model_paths:
            raise EngineArgumentError("engine 'trtllm' needs the local path of the model directory")
        model_dir = request.model_paths[0]
        if model_dir.endswith((".safetensors", ".json")):
            model_dir = str(Path(model_dir).parent)
        tp = max(1, len(accelerated_devices(request)))
        argv = [request.installation.executable, "serve", model_dir, "--host", request.host]
        argv += ["--port", str(request.port), "--backend", "pytorch", "--tp_size", str(tp), "--pp_size", "1"]
        if deployment.context_length:
            argv += ["--max_seq_len", str(deployment.context_length)]
        return LaunchSpec(
            argv=(*argv, *extra),
            env=launch_env(request),
            port=request.port,
            probe_host=probe_host(request),
            served_model_name=model_dir,
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=5.0),
            ready_timeout_s=1800.0,
        )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the TensorRT-LLM engine."""
    register(TrtllmEngine())
