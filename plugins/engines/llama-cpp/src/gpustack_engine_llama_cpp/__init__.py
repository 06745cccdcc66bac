"""gpustack-core engine plugin for llama.cpp's ``llama-server`` (and ``rpc-server`` for multi-node)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.errors import EngineNotInstalledError
from gpustack_core.types import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
)

from ._build import build_llama_server, seed_from_build
from ._presets import preset_args

__all__ = [
    "SEED_BUILD_ENV",
    "LlamaCppEngine",
    "build_llama_server",
    "ensure_default_build",
    "gpustack_register_engines",
    "seed_from_build",
]

#: An existing cmake build directory of llama.cpp that :func:`ensure_default_build` caches instead
#: of building (tests and CI: saves the 10-20 minute build).
SEED_BUILD_ENV = "GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD"

#: Every spelling of the flags the plugin always sets (common/arg.cpp at llama.cpp 0c1e57098).
OWNED_FLAGS: frozenset[str] = frozenset(
    {
        "-m", "--model",
        "--host",
        "--port",
        "-a", "--alias",
        "--rpc",
        "--embedding", "--embeddings",
        "--rerank", "--reranking",
        "-ngl", "--gpu-layers", "--n-gpu-layers",
        "-ts", "--tensor-split",
    }
)  # fmt: skip
#: Owned as well when the deployment sets ``context_length``.
CONTEXT_FLAGS: frozenset[str] = frozenset({"-c", "--ctx-size"})
#: What each category it serves adds to ``llama-server``'s arguments.
CATEGORY_FLAGS: dict[ModelCategory, tuple[str, ...]] = {
    ModelCategory.LLM: (),
    ModelCategory.EMBEDDING: ("--embeddings",),
    ModelCategory.RERANK: ("--reranking",),
}


class LlamaCppEngine(engines.VersionedEngine):
    """llama.cpp's OpenAI-compatible ``llama-server`` for GGUF models.

    One replica is one ``llama-server``; with several GPUs it splits layers across them
    (``--split-mode layer --tensor-split``), and across workers it drives ``rpc-server`` processes
    on the subordinate workers through ``--rpc``. A category ``embedding`` deployment is started
    with ``--embeddings``, ``rerank`` with ``--reranking``.
    """

    name = "llama.cpp"
    owned_flags = OWNED_FLAGS
    system_program = "llama-server"

    def capabilities(self) -> EngineCapabilities:
        """GGUF; LLM, embedding and rerank; CPU and the GPU vendors llama.cpp has backends for;
        presets: modes (slots) and speculative decoding (``--spec-type``, see _presets.py)."""
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,),
            categories=tuple(CATEGORY_FLAGS),
            vendors=("cpu", "nvidia", "amd", "apple"),
            pipeline_parallel=True,
            multi_worker=True,
            cpu_offload=True,
            openai_endpoints=(*engines.TEXT_ENDPOINTS, "/v1/embeddings", "/v1/rerank"),
            performance_modes=("latency", "throughput"),
            speculative_methods=("eagle3", "mtp", "ngram", "draft_model"),
        )

    def default_version(self) -> str:
        """llama-cpp-python 0.3.36, which vendors llama.cpp 0c1e57098."""
        return "0.3.36"

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """Build ``llama-server`` from the llama-cpp-python ``version`` sdist (cached by version)."""
        return build_llama_server(version, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``llama-server`` for rank 0, ``rpc-server`` for the subordinate workers (rank > 0)."""
        deployment = request.deployment
        extra = engines.user_args(self, request, CONTEXT_FLAGS)
        executable = Path(request.installation.executable)
        env: dict[str, str] = {}
        if any(executable.parent.glob("lib*.so*")):  # a seeded build with shared libraries
            inherited = os.environ.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = (
                f"{executable.parent}:{inherited}" if inherited else str(executable.parent)
            )
        if request.node_rank > 0:
            return self._rpc_server_spec(request, executable, extra, env)
        model = engines.model_path(self, request, "the GGUF file to serve")
        argv = [str(executable), "--model", model, "--host", request.host]
        argv += ["--port", str(request.port), "--alias", engines.served_model_name(request)]
        if deployment.context_length:
            argv += ["--ctx-size", str(deployment.context_length)]
        argv += ["--n-gpu-layers", str(engines.gpu_layers(request))]
        split = engines.tensor_split(request)
        if split is not None:
            argv += ["--split-mode", "layer", "--tensor-split", split]
        if request.rpc_servers:
            argv += ["--rpc", ",".join(request.rpc_servers)]
        engines.check_served(self, request)
        argv += CATEGORY_FLAGS[deployment.category]
        argv += preset_args(deployment.performance, request.installation.version)
        return engines.make_launch_spec(request, [*argv, "--metrics", "--no-webui", *extra], extra_env=env)

    def _rpc_server_spec(
        self, request: LaunchRequest, executable: Path, extra: tuple[str, ...], env: dict[str, str]
    ) -> LaunchSpec:
        rpc_server = executable.parent / "rpc-server"
        if request.installation.origin != "located" and not rpc_server.exists() and executable.exists():
            raise EngineNotInstalledError(
                f"{rpc_server} does not exist: build llama.cpp with -DGGML_RPC=ON "
                "(GPUSTACK_CORE_LLAMA_CPP_CMAKE_ARGS=-DGGML_RPC=ON) to serve across workers"
            )
        argv = [str(rpc_server), "--host", request.host, "--port", str(request.port), *extra]
        return engines.make_launch_spec(request, argv, health_path=None, extra_env=env, readiness_mode="tcp")


def ensure_default_build(options: EngineOptions | None = None) -> EngineInstallation:
    """``llama-server`` at the plugin's default version: the cached build; else the build directory
    named by ``$GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD``, cached with :func:`seed_from_build`; else
    built now from the sdist (which takes long).

    Parameters:
        options: the engines directory; default: :func:`gpustack_core.engines.default_engine_options`.
    """
    engine = LlamaCppEngine()
    options = options or engines.default_engine_options()
    seed = os.environ.get(SEED_BUILD_ENV)
    if seed and engine.locate(engine.default_version(), options) is None:
        seed_from_build(engine.default_version(), Path(seed), options)
    return engines.ensure_installed(engine, None, options)


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the llama.cpp engine."""
    register(LlamaCppEngine())
