"""Shared fixtures for the core test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpustack_core.engines import default_engine_options, ensure_installed
from gpustack_core.types import EngineInstallation

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Point at an existing cmake build dir of llama.cpp to cache it instead of building (saves ~10 min).
SEED_ENV = "GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD"
SHARED_DIR = Path(os.environ.get("GPUSTACK_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No allow/deny lists from the caller's environment."""
    monkeypatch.delenv("GPUSTACK_CORE_PLUGINS_ALLOW", raising=False)
    monkeypatch.delenv("GPUSTACK_CORE_PLUGINS_DENY", raising=False)


@pytest.fixture(scope="session")
def llama_cpp_installation() -> EngineInstallation:
    """llama.cpp at the plugin's default version: the cached build, else built now from the sdist."""
    from gpustack_engine_llama_cpp import LlamaCppEngine, seed_from_build

    engine = LlamaCppEngine()
    options = default_engine_options()
    seed = os.environ.get(SEED_ENV)
    if seed and engine.locate(engine.default_version(), options) is None:
        seed_from_build(engine.default_version(), Path(seed), options)
    return ensure_installed(engine, None, options)
