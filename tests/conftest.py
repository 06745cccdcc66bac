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


#: Set to 1 to build llama.cpp from source (20+ min on two cores) for the native-build tests when
#: no native build is cached or seeded; without it they are skipped on a machine that has none.
NATIVE_BUILD_ENV = "GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE"


@pytest.fixture(scope="session")
def llama_cpp_installation() -> EngineInstallation:
    """llama.cpp at the plugin's default version, the prebuilt ``xllamacpp`` runtime: cached, else
    pip-installed now (seconds), so that a fresh machine's CI compiles nothing."""
    from gpustack_engine_llama_cpp import ensure_prebuilt

    return ensure_prebuilt()


@pytest.fixture(scope="session")
def llama_cpp_native_installation() -> EngineInstallation:
    """A native ``llama-server`` build: cached, else a seed build named by
    ``$GPUSTACK_CORE_LLAMA_CPP_SEED_BUILD``, else built now when ``$GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE=1``;
    otherwise the test is skipped (opt-in: a build takes 20+ minutes on two cores)."""
    from gpustack_engine_llama_cpp import SEED_BUILD_ENV, cached_native_build, ensure_native_build

    found = cached_native_build()
    if found is not None:
        return found
    if os.environ.get(SEED_BUILD_ENV) or os.environ.get(NATIVE_BUILD_ENV) == "1":
        return ensure_native_build()
    pytest.skip(
        f"no native llama.cpp build cached; set {NATIVE_BUILD_ENV}=1 to build one (20+ min) or "
        f"{SEED_BUILD_ENV}=<cmake build dir> to seed it"
    )
