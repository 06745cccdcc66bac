"""The engine conformance suite, run against a real llama-server (slow: builds it on first use)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine, ensure_default_build

from gpustack_core.contracts import Engine
from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import EngineInstallation, ModelCategory


@pytest.fixture(scope="module")
def built() -> EngineInstallation:
    return ensure_default_build()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[ModelCategory, tuple[str, ...]]:
    base = tmp_path_factory.mktemp("models")
    return {
        ModelCategory.LLM: (str(write_llama_gguf(base / "chat.gguf", TinyLlamaSpec(seed=3))),),
        ModelCategory.EMBEDDING: (
            str(write_llama_gguf(base / "embed.gguf", TinyLlamaSpec(seed=4, pooling="mean"))),
        ),
    }


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the first test may build llama-server
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
