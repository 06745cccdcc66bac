"""The engine conformance suite, run against the prebuilt runtime and (opt-in) a native build."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest
from gpustack_engine_llama_cpp import (
    SEED_BUILD_ENV,
    LlamaCppEngine,
    cached_native_build,
    ensure_native_build,
    ensure_prebuilt,
)

from gpustack_core.contracts import Engine
from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import EngineInstallation, ModelCategory


@pytest.fixture(scope="module", params=["prebuilt", "native"])
def built(request: pytest.FixtureRequest) -> EngineInstallation:
    """The prebuilt runtime; a native build only when cached, seeded or asked for
    (``GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE=1``: a build takes 20+ minutes on two cores)."""
    if request.param == "prebuilt":
        return ensure_prebuilt()
    found = cached_native_build()
    if found is not None:
        return found
    if os.environ.get(SEED_BUILD_ENV) or os.environ.get("GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE") == "1":
        return ensure_native_build()
    pytest.skip("no native llama.cpp build cached; GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE=1 builds one")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[ModelCategory, tuple[str, ...]]:
    base = tmp_path_factory.mktemp("models")
    return {
        ModelCategory.LLM: (str(write_llama_gguf(base / "chat.gguf", TinyLlamaSpec(seed=3))),),
        ModelCategory.EMBEDDING: (
            str(write_llama_gguf(base / "embed.gguf", TinyLlamaSpec(seed=4, pooling="mean"))),
        ),
        ModelCategory.RERANK: (
            str(write_llama_gguf(base / "rerank.gguf", TinyLlamaSpec(seed=5, pooling="rank"))),
        ),
    }


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the native variant may build llama-server (opt-in)
class TestLlamaCppConformance(EngineConformanceSuite):
    ready_timeout_s = 120.0

    @pytest.fixture
    def engine(self) -> Engine:
        return LlamaCppEngine()

    @pytest.fixture
    def installation(self, built: EngineInstallation) -> EngineInstallation:
        return built

    @pytest.fixture
    def model_paths(
        self, models: dict[ModelCategory, tuple[str, ...]]
    ) -> Mapping[ModelCategory, tuple[str, ...]]:
        return models

    @pytest.fixture
    def device_setup(self) -> DeviceSetup:
        return DeviceSetup.cpu()
