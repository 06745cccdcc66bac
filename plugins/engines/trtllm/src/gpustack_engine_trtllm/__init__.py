"""gpustack-core engine plugin for TensorRT-LLM's OpenAI server (``trtllm-serve``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.types import ModelCategory, ModelFormat

if TYPE_CHECKING:
    from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec


__all__ = ["TrtllmEngine", "gpustack_register_engines"]

OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "--host", "--port", "--backend",
        "--tensor_parallel_size", "--tp_size", "--pipeline_parallel_size", "--pp_size",
    }
)  # fmt: skip
CONTEXT_FLAGS: frozenset[str] = frozenset({"--max_seq_len"})
CATEGORIES = (ModelCategory.LLM, ModelCategory.VLM)


class TrtllmEngine(engines.VenvEngine):
    """``trtllm-serve serve MODEL`` with the PyTorch backend, tensor parallel over one node's GPUs.

    trtllm-serve has no served-model-name option in either recorded snapshot of its CLI
    (``_cli.py``): it serves the model under the ``MODEL`` argument, so the spec's
    ``served_model_name`` is the model path (the server's proxy maps the deployment's name to it).
    Multi-node runs need ``mpirun`` and are not offered. The command is the same for every
    version this plugin installs (1.2.1 by default, 1.0.0 side by side).
    """

    name = "trtllm"
    owned_flags = OWNED_FLAGS
    requirements = ("tensorrt_llm=={version}",)  # needs CUDA and MPI libraries on the machine
    program = system_program = "trtllm-serve"

    def capabilities(self) -> EngineCapabilities:
        """safetensors; LLM and VLM; NVIDIA; TP and PP within one node."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=CATEGORIES,
            vendors=("nvidia",),
            tensor_parallel=True,
            pipeline_parallel=True,
            openai_endpoints=engines.TEXT_ENDPOINTS,
        )

    def default_version(self) -> str:
        """The current TensorRT-LLM release on PyPI (1.0.0 stays installable side by side)."""
        return "1.2.1"

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``trtllm-serve serve MODEL --host --port --backend pytorch --tp_size N --pp_size 1``."""
        deployment = request.deployment
        extra = engines.user_args(self, request, CONTEXT_FLAGS)
        engines.check_served(self, request, "multi-node needs mpirun")
        model_dir = engines.model_directory(self, request)
        tp = max(1, len(engines.accelerated_devices(request)))
        argv = [request.installation.executable, "serve", model_dir, "--host", request.host]
        argv += ["--port", str(request.port), "--backend", "pytorch", "--tp_size", str(tp), "--pp_size", "1"]
        if deployment.context_length:
            argv += ["--max_seq_len", str(deployment.context_length)]
        return engines.make_launch_spec(
            request, (*argv, *extra), served_name=model_dir, ready_timeout_s=1800.0
        )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the TensorRT-LLM engine."""
    register(TrtllmEngine())
