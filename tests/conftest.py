"""Shared fixtures for the core test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpustack_core.types import EngineInstallation

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("GPUSTACK_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No allow/deny lists from the caller's environment."""
    monkeypatch.delenv("GPUSTACK_CORE_PLUGINS_ALLOW", raising=False)
    monkeypatch.delenv("GPUSTACK_CORE_PLUGINS_DENY", raising=False)


@pytest.fixture(scope="session")
def llama_cpp_installation() -> EngineInstallation:
    """llama.cpp at the plugin's default version: the cached build, else a seed build named by
    ``$GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD`` (saves ~10 min), else built now from the sdist."""
    from gpustack_engine_llama_cpp import ensure_default_build

    return ensure_default_build()
