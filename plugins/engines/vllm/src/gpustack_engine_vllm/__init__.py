"""gpustack-core engine plugin for vLLM (``vllm serve``), multi-node through Ray."""

from __future__ import annotations

import shlex
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

__all__ = ["VllmEngine", "gpustack_register_engines"]

#: Every spelling of the flags the plugin sets (arg_utils.py / cli_args.py, see _cli.py).
OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host", "--port", "--model", "--served-model-name", "--task",
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
DEFAULT_RAY_PORT = 6379


class VllmEngine(Engine):
    """vLLM's OpenAI-compatible server for safetensors models on NVIDIA and AMD GPUs.

    One node: ``--tensor-parallel-size`` = the node's devices. Several nodes: tensor parallel
    within a node, pipeline parallel across nodes, ``--distributed-executor-backend ray``; rank 0
    starts the Ray head then ``vllm serve``, the other ranks join with ``ray start --block``.
    """

    name = "vllm"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """safetensors; LLM, VLM, embedding, rerank; NVIDIA and AMD; TP, PP and multi-node."""
        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=tuple(TASKS),
            vendors=("nvidia", "amd"),
            tensor_parallel=True,
            pipeline_parallel=True,
            multi_worker=True,
            cpu_offload=True,
            openai_endpoints=(
                "/v1/models",
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/score",
            ),
        )

    def default_version(self) -> str:
        """The vLLM release whose CLI the recorded flags come from."""
        return "0.7.3"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """``vllm`` on PATH (version ``system``), then virtualenvs under the engines directory."""
        return located_on_path(self.name, "vllm") + list_installations(options, self.name)

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """``pip install vllm==<version>`` (and ray for multi-node) into its own virtualenv."""
        return install_venv(self.name, version, [f"vllm=={version}", "ray[default]"], "vllm", options)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete a virtualenv this plugin installed."""
        remove_installation(installation, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``vllm serve`` on rank 0 (behind ``ray start --head`` when multi-node), ``ray start`` on others."""
        deployment = request.deployment
        owned = OWNED_FLAGS | (CONTEXT_FLAGS if deployment.context_length else frozenset())
        extra = refuse_owned_flags(self.name, deployment.extra_args, owned)
        if deployment.category not in TASKS:
            raise EngineArgumentError(
                f"engine 'vllm' does not serve {deployment.category.value!r} models; "
                f"use one of: {', '.join(c.value for c in TASKS)}"
            )
        executable = Path(request.installation.executable)
        ray = str(executable.parent / "ray")
        name = served_model_name(request)
        devices_per_node = max(1, len(accelerated_devices(request)))
        ray_port = _ray_port(request.head_address)
        if request.node_rank > 0:
            if not request.head_address:
                raise EngineArgumentError("a vLLM worker node needs the head's address (head_address)")
            head_host = request.head_address.rsplit(":", 1)[0]
            return LaunchSpec(
                argv=(ray, "start", "--address", f"{head_host}:{ray_port}", "--block"),
                env=launch_env(request),
                port=request.port,
                probe_host=probe_host(request),
                served_model_name=name,
                readiness_mode="process",
            )
        if not request.model_paths:
            raise EngineArgumentError("engine 'vllm' needs the local path of the model directory")
        model_dir = (
            str(Path(request.model_paths[0]).parent)
            if request.model_paths[0].endswith((".safetensors", ".json"))
            else request.model_paths[0]
        )
        serve = [str(executable), "serve", model_dir, "--host", request.host, "--port", str(request.port)]
        serve += ["--served-model-name", name, "--task", TASKS[deployment.category]]
        serve += ["--tensor-parallel-size", str(devices_per_node)]
        serve += ["--pipeline-parallel-size", str(request.node_count)]
        if deployment.context_length:
            serve += ["--max-model-len", str(deployment.context_length)]
        env = launch_env(request)
        if request.node_count > 1:
            serve += ["--distributed-executor-backend", "ray"]
            serve += extra
            script = (
                f"{shlex.join([ray, 'start', '--head', '--port', str(ray_port)])} && exec {shlex.join(serve)}"
            )
            argv: tuple[str, ...] = ("/bin/sh", "-c", script)
            env = launch_env(request, RAY_ADDRESS=f"127.0.0.1:{ray_port}")
        else:
            argv = (*serve, *extra)
        return LaunchSpec(
            argv=argv,
            env=env,
            port=request.port,
            probe_host=probe_host(request),
            served_model_name=name,
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=5.0),
            ready_timeout_s=1800.0,
        )


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
