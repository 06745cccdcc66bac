"""Fixtures for estimation tests: generated GGUF models (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ~150 k parameter F32 model."""
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", TinyLlamaSpec.tiny())


@pytest.fixture(scope="session")
def small_q8_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ~7 M parameter model, Q8_0, GQA 8/2."""
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "small-q8.gguf", TinyLlamaSpec.small("Q8_0"))
