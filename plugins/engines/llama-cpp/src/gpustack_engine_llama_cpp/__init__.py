"""gpustack-core engine plugin for llama.cpp's ``llama-server`` (and its RPC server for multi-node)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.errors import EngineArgumentError, EngineNotInstalledError
from gpustack_core.types import ModelCategory, ModelFormat

from ._build import RPC_SERVER_NAMES, build_llama_server, seed_from_build
from ._prebuilt import (
    PREBUILT_DEFAULT_VERSION,
    PREBUILT_PREFIX,
    SERVER_SCRIPT,
    install_prebuilt,
    is_prebuilt,
    prebuilt_version,
)
from ._presets import preset_args

if TYPE_CHECKING:
    from gpustack_core.types import (
        EngineCapabilities,
        EngineInstallation,
        EngineOptions,
        LaunchRequest,
        LaunchSpec,
    )


__all__ = [
    "NATIVE_DEFAULT_VERSION",
    "PREBUILT_DEFAULT_VERSION",
    "PREBUILT_PREFIX",
    "SEED_BUILD_ENV",
    "LlamaCppEngine",
    "build_llama_server",
    "cached_native_build",
    "ensure_native_build",
    "ensure_prebuilt",
    "gpustack_register_engines",
    "install_prebuilt",
    "is_prebuilt",
    "prebuilt_version",
    "seed_from_build",
]

#: The native build's default version: llama-cpp-python 0.3.36, which vendors llama.cpp 0c1e57098.
NATIVE_DEFAULT_VERSION = "0.3.36"

#: An existing cmake build directory of llama.cpp that :func:`ensure_native_build` caches instead
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
EMBEDDING_FLAGS: frozenset[str] = frozenset({"--embedding", "--embeddings"})
RERANK_FLAGS: frozenset[str] = frozenset({"--rerank", "--reranking"})
#: Owned as well when the deployment sets ``context_length``.
CONTEXT_FLAGS: frozenset[str] = frozenset({"-c", "--ctx-size"})
#: Flags of the deployment's extra arguments that subordinates pass to ``ggml-rpc-server`` too (with
#: their value; tools/rpc/rpc-server.cpp parses ``-t/--threads N``); the rest are ``llama-server``'s.
RPC_SERVER_SHARED_FLAGS: frozenset[str] = frozenset({"-t", "--threads"})
#: What each category it serves adds to ``llama-server``'s arguments.
CATEGORY_FLAGS: dict[ModelCategory, tuple[str, ...]] = {
    ModelCategory.LLM: (),
    ModelCategory.EMBEDDING: ("--embeddings",),
    ModelCategory.RERANK: ("--reranking",),
}


class LlamaCppEngine(engines.VersionedEngine):
    """llama.cpp's OpenAI-compatible ``llama-server`` for GGUF models.

    Two kinds of versions live side by side: the prebuilt runtime ``xllamacpp-<wheel version>``
    (the default: a pip install, no compiler, CPU only, no RPC) and native builds named by their
    llama-cpp-python version (``0.3.36``: built from source, with CUDA or RPC when asked). With no
    pinned version a native build is preferred once one is installed.

    One replica is one ``llama-server``; with several GPUs it splits layers across them
    (``--split-mode layer --tensor-split``), and across workers it drives RPC servers
    (``ggml-rpc-server``; ``rpc-server`` in older llama.cpp) on the subordinate workers through
    ``--rpc``. A category ``embedding`` deployment is started
    with ``--embeddings``, ``rerank`` with ``--reranking``.
    """

    name = "llama.cpp"
    owned_flags = OWNED_FLAGS
    system_program = "llama-server"

    def capabilities(self) -> EngineCapabilities:
        """GGUF; LLM, embedding and rerank; CPU and the GPU vendors llama.cpp has backends for;
        presets: modes (slots) and speculative decoding (``--spec-type``, see _presets.py)."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.GGUF,),
            categories=tuple(CATEGORY_FLAGS),
            vendors=("cpu", "nvidia", "amd", "apple"),
            pipeline_parallel=True,
            multi_worker=True,
            subordinates_need_weights=False,
            cpu_offload=True,
            openai_endpoints=(*engines.TEXT_ENDPOINTS, "/v1/embeddings", "/v1/rerank"),
            performance_modes=("latency", "throughput"),
            speculative_methods=("eagle3", "mtp", "ngram", "draft_model"),
        )

    def default_version(self) -> str:
        """The prebuilt runtime (:data:`PREBUILT_DEFAULT_VERSION`): what a fresh machine installs."""
        return PREBUILT_DEFAULT_VERSION

    def locate(self, version: str | None, options: EngineOptions) -> EngineInstallation | None:
        """The pinned ``version``; with none, a native build before the prebuilt runtime.

        Without a pinned version: the native default (:data:`NATIVE_DEFAULT_VERSION`) if built, else
        the newest native build under the engines directory, else ``llama-server`` on ``PATH``, else
        the prebuilt default, else the newest prebuilt version; ``None`` when nothing is installed.
        """
        if version is not None:
            return super().locate(version, options)
        installed = self.installed_versions(options)
        native = [i for i in installed if not is_prebuilt(i)]
        prebuilt = [i for i in installed if is_prebuilt(i)]
        for candidates, default in ((native, NATIVE_DEFAULT_VERSION), (prebuilt, PREBUILT_DEFAULT_VERSION)):
            for installation in candidates:
                if installation.version == default:
                    return installation
            if candidates:
                own = [i for i in candidates if i.origin != "located"]
                return (own or candidates)[-1]
        return None

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """``xllamacpp-<wheel version>``: pip install the prebuilt wheel into its own environment;
        any other version: build ``llama-server`` from that llama-cpp-python sdist (20+ minutes on
        two cores). Both are cached by version."""
        if is_prebuilt(version):
            return install_prebuilt(version, options)
        return build_llama_server(version, options)

    def validate_extra_args(self, args: Sequence[str]) -> tuple[str, ...]:
        """Owned flags are refused; ``--embeddings`` and ``--reranking`` name the category to use."""
        try:
            return super().validate_extra_args(args)
        except EngineArgumentError as exc:
            for flags, category in ((EMBEDDING_FLAGS, "embedding"), (RERANK_FLAGS, "rerank")):
                if any(arg.split("=", 1)[0] in flags for arg in args):
                    raise EngineArgumentError(
                        f"{exc}; to serve {category}s, deploy with the category instead: "
                        f"gpustack-core manage deploy ... --category {category} "
                        f'(REST: "category": "{category}")'
                    ) from exc
            raise

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``llama-server`` for rank 0, the RPC server for the subordinate workers (rank > 0)."""
        deployment = request.deployment
        extra = engines.user_args(self, request, CONTEXT_FLAGS)
        executable = Path(request.installation.executable)
        env: dict[str, str] = {}
        if any(executable.parent.glob("lib*.so*")):  # a seeded build with shared libraries
            inherited = os.environ.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = (
                f"{executable.parent}:{inherited}" if inherited else str(executable.parent)
            )
        prebuilt = is_prebuilt(request.installation)
        if prebuilt:
            _check_prebuilt_fits(request)
        if request.node_rank > 0:
            return self._rpc_server_spec(request, executable, extra, env)
        model = engines.model_path(self, request, "the GGUF file to serve")
        program = [str(executable), str(SERVER_SCRIPT)] if prebuilt else [str(executable)]
        argv = [*program, "--model", model, "--host", request.host]
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
        rpc_server = _rpc_server_program(request, executable)
        argv = [
            str(rpc_server),
            "--host",
            request.host,
            "--port",
            str(request.port),
            *_rpc_server_args(extra),
        ]
        return engines.make_launch_spec(request, argv, health_path=None, extra_env=env, readiness_mode="tcp")


def _rpc_server_args(extra: Sequence[str]) -> list[str]:
    """The deployment's extra arguments that ``ggml-rpc-server`` takes (:data:`RPC_SERVER_SHARED_FLAGS`
    with their values, ``--flag=value`` split, as its parser wants); the others are for
    ``llama-server`` on the head, and ``ggml-rpc-server`` would exit on them."""
    out: list[str] = []
    words = iter(extra)
    for word in words:
        name, _, value = word.partition("=")
        if name in RPC_SERVER_SHARED_FLAGS:
            out += [name, value] if value else [name, next(words, "")]
    return [w for w in out if w]


def _rpc_server_program(request: LaunchRequest, executable: Path) -> Path:
    """The RPC server beside ``llama-server`` (or on ``PATH`` for a located one), by either name.

    Raises:
        EngineNotInstalledError: the installation exists but has no RPC server (built without RPC).
    """
    for name in RPC_SERVER_NAMES:
        if (executable.parent / name).exists():
            return executable.parent / name
    if request.installation.origin == "located":
        for name in RPC_SERVER_NAMES:
            found = shutil.which(name)
            if found:
                return Path(found)
    if executable.exists():
        raise EngineNotInstalledError(
            f"{executable.parent} has no {' or '.join(RPC_SERVER_NAMES)}, so this llama.cpp cannot serve "
            "across workers: it was built without -DGGML_RPC=ON (this plugin's native builds include it "
            f"since 2026-12-03); remove it and install it again: gpustack-core engines install llama.cpp "
            f"{request.installation.version}"
        )
    return executable.parent / RPC_SERVER_NAMES[0]


def _check_prebuilt_fits(request: LaunchRequest) -> None:
    """Refuse, with the way out, what the CPU-only, RPC-less prebuilt runtime cannot serve."""
    version = request.installation.version
    native = (
        f"install a native build (gpustack-core engines install llama.cpp {NATIVE_DEFAULT_VERSION}, "
        "with GPUSTACK_CORE_LLAMA_CPP_CMAKE_ARGS={flags}) and pin it with the deployment's engine_version"
    )
    if request.rpc_servers or request.node_rank > 0:
        raise EngineNotInstalledError(
            f"llama.cpp {version} (the prebuilt xllamacpp runtime) has no RPC, so it cannot serve across "
            "workers; " + native.format(flags="-DGGML_RPC=ON")
        )
    gpus = engines.accelerated_devices(request)
    if gpus:
        names = ", ".join(f"{d.accelerator}:{d.index}" for d in gpus)
        raise EngineNotInstalledError(
            f"llama.cpp {version} (the prebuilt xllamacpp runtime) runs on the CPU only, but the placement "
            f"has {names}; " + native.format(flags="-DGGML_CUDA=ON (or your GPU's backend)")
        )


def ensure_prebuilt(options: EngineOptions | None = None) -> EngineInstallation:
    """The prebuilt runtime at :data:`PREBUILT_DEFAULT_VERSION`: cached, else pip-installed now
    (about 10-20 s with a warm pip cache). What the test suites use unless they ask for a native build.

    Parameters:
        options: the engines directory; default: :func:`gpustack_core.engines.default_engine_options`.
    """
    engine = LlamaCppEngine()
    return engines.ensure_installed(
        engine, PREBUILT_DEFAULT_VERSION, options or engines.default_engine_options()
    )


def cached_native_build(options: EngineOptions | None = None) -> EngineInstallation | None:
    """The native build at :data:`NATIVE_DEFAULT_VERSION` if it is installed, else ``None`` (never builds)."""
    return LlamaCppEngine().locate(NATIVE_DEFAULT_VERSION, options or engines.default_engine_options())


def ensure_native_build(options: EngineOptions | None = None) -> EngineInstallation:
    """``llama-server`` at :data:`NATIVE_DEFAULT_VERSION`: the cached build; else the build directory
    named by ``$GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD``, cached with :func:`seed_from_build`; else
    built now from the sdist (which takes long).

    Parameters:
        options: the engines directory; default: :func:`gpustack_core.engines.default_engine_options`.
    """
    engine = LlamaCppEngine()
    options = options or engines.default_engine_options()
    seed = os.environ.get(SEED_BUILD_ENV)
    if seed and engine.locate(NATIVE_DEFAULT_VERSION, options) is None:
        seed_from_build(NATIVE_DEFAULT_VERSION, Path(seed), options)
    return engines.ensure_installed(engine, NATIVE_DEFAULT_VERSION, options)


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the llama.cpp engine."""
    register(LlamaCppEngine())
