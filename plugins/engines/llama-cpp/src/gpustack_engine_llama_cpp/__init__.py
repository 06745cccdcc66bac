"""gpustack-core engine plugin for llama.cpp's ``llama-server`` (and ``rpc-server`` for multi-node)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gpustack_core import Engine, hookimpl
from gpustack_core.engines import (
    accelerated_devices,
    default_engine_options,
    ensure_installed,
    launch_env,
    list_installations,
    located_on_path,
    probe_host,
    refuse_owned_flags,
    remove_installation,
    served_model_name,
)
from gpustack_core.errors import EngineArgumentError, EngineNotInstalledError
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

from ._build import build_llama_server, seed_from_build

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


class LlamaCppEngine(Engine):
    """llama.cpp's OpenAI-compatible ``llama-server`` for GGUF models.

    One replica is one ``llama-server``; with several GPUs it splits layers across them
    (``--split-mode layer --tensor-split``), and across workers it drives ``rpc-server`` processes
    on the subordinate workers through ``--rpc``. A category ``embedding`` deployment is started
    with ``--embeddings``, ``rerank`` with ``--reranking``.
    """

    name = "llama.cpp"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """GGUF; LLM, embedding and rerank; CPU and the GPU vendors llama.cpp has backends for."""
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,),
            categories=(ModelCategory.LLM, ModelCategory.EMBEDDING, ModelCategory.RERANK),
            vendors=("cpu", "nvidia", "amd", "apple"),
            tensor_parallel=False,
            pipeline_parallel=True,
            multi_worker=True,
            cpu_offload=True,
            openai_endpoints=(
                "/v1/models",
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/rerank",
            ),
        )

    def default_version(self) -> str:
        """llama-cpp-python 0.3.36, which vendors llama.cpp 0c1e57098."""
        return "0.3.36"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """Builds under ``<engines_dir>/llama.cpp/``, after a ``llama-server`` found on ``PATH``
        (version ``"system"``, listed first so that a pinned build wins)."""
        return located_on_path(self.name, "llama-server") + list_installations(options, self.name)

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """Build ``llama-server`` from the llama-cpp-python ``version`` sdist (cached by version)."""
        return build_llama_server(version, options)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete a cached build; a ``llama-server`` found on ``PATH`` is refused."""
        remove_installation(installation, options)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``llama-server`` for rank 0, ``rpc-server`` for the subordinate workers (rank > 0)."""
        deployment = request.deployment
        owned = OWNED_FLAGS | (CONTEXT_FLAGS if deployment.context_length else frozenset())
        extra = refuse_owned_flags(self.name, deployment.extra_args, owned)
        executable = Path(request.installation.executable)
        env_extra: dict[str, str] = {}
        if any(executable.parent.glob("lib*.so*")):
            inherited = os.environ.get("LD_LIBRARY_PATH")
            env_extra["LD_LIBRARY_PATH"] = (
                f"{executable.parent}:{inherited}" if inherited else str(executable.parent)
            )
        if request.node_rank > 0:
            return self._rpc_server_spec(request, executable, extra, env_extra)
        if not request.model_paths:
            raise EngineArgumentError(f"engine {self.name!r} needs the path of the GGUF file to serve")
        name = served_model_name(request)
        argv = [str(executable), "--model", request.model_paths[0], "--host", request.host]
        argv += ["--port", str(request.port), "--alias", name]
        if deployment.context_length:
            argv += ["--ctx-size", str(deployment.context_length)]
        gpus = accelerated_devices(request)
        claim = request.placement.claim
        if gpus or request.rpc_servers:
            layers = claim.offloaded_layers if claim.strategy == "partial_offload" else None
            argv += ["--n-gpu-layers", str(layers if layers is not None else 999)]
        else:
            argv += ["--n-gpu-layers", "0"]
        if len(gpus) > 1:
            shares = [device_claim.memory_bytes for device_claim in claim.devices]
            if len(shares) != len(gpus) or not all(shares):
                shares = [1] * len(gpus)
            argv += ["--split-mode", "layer", "--tensor-split", ",".join(str(s) for s in shares)]
        if request.rpc_servers:
            argv += ["--rpc", ",".join(request.rpc_servers)]
        if deployment.category == ModelCategory.EMBEDDING:
            argv.append("--embeddings")
        elif deployment.category == ModelCategory.RERANK:
            argv.append("--reranking")
        elif deployment.category not in (ModelCategory.LLM,):
            raise EngineArgumentError(
                f"engine {self.name!r} does not serve {deployment.category.value!r} models; "
                "use one of: llm, embedding, rerank"
            )
        argv += ["--metrics", "--no-webui", *extra]
        return LaunchSpec(
            argv=tuple(argv),
            env=launch_env(request, **env_extra),
            port=request.port,
            probe_host=probe_host(request),
            served_model_name=name,
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=5.0),
        )

    def _rpc_server_spec(
        self, request: LaunchRequest, executable: Path, extra: tuple[str, ...], env_extra: dict[str, str]
    ) -> LaunchSpec:
        rpc_server = executable.parent / "rpc-server"
        if request.installation.origin != "located" and not rpc_server.exists() and executable.exists():
            raise EngineNotInstalledError(
                f"{rpc_server} does not exist: build llama.cpp with -DGGML_RPC=ON "
                "(GPUSTACK_CORE_LLAMA_CPP_CMAKE_ARGS=-DGGML_RPC=ON) to serve across workers"
            )
        argv = [str(rpc_server), "--host", request.host, "--port", str(request.port), *extra]
        return LaunchSpec(
            argv=tuple(argv),
            env=launch_env(request, **env_extra),
            port=request.port,
            probe_host=probe_host(request),
            served_model_name=served_model_name(request),
            readiness_mode="tcp",
        )


def ensure_default_build(options: EngineOptions | None = None) -> EngineInstallation:
    """``llama-server`` at the plugin's default version: the cached build; else the build directory
    named by ``$GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD``, cached with :func:`seed_from_build`; else
    built now from the sdist (which takes long).

    Parameters:
        options: the engines directory; default: :func:`gpustack_core.engines.default_engine_options`.
    """
    engine = LlamaCppEngine()
    options = options or default_engine_options()
    seed = os.environ.get(SEED_BUILD_ENV)
    if seed and engine.locate(engine.default_version(), options) is None:
        seed_from_build(engine.default_version(), Path(seed), options)
    return ensure_installed(engine, None, options)


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the llama.cpp engine."""
    register(LlamaCppEngine())
