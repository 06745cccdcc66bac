"""The real build path: download the llama-cpp-python sdist from the package index, build
llama-server and its RPC server with cmake, cache them by version.

A build into a clean directory is slow (about 10-20 minutes on 2 cores), so it runs only when asked:
``GPUSTACK_CORE_TEST_CLEAN_BUILD=1 pytest -m slow plugins/engines/llama-cpp/tests/test_llama_cpp_build.py``.
The build ``nox -s ci`` makes (``gpustack-core engines install llama.cpp 0.3.36``, the same code
path) is checked the same way by the second test whenever the cached build is one the plugin built.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine, cached_native_build, ensure_native_build

from gpustack_core.types import EngineOptions

pytestmark = pytest.mark.slow


def _check_build(binary: Path) -> None:
    """A static llama-server and ggml-rpc-server from llama.cpp 0c1e57098, both runnable."""
    info = json.loads((binary.parent.parent / "build-info.json").read_text())
    assert info["llama_cpp_commit"] == "0c1e57098"
    assert "-DLLAMA_CURL=OFF" in info["cmake_args"]
    assert "-DGGML_RPC=ON" in info["cmake_args"]
    assert info["targets"] == ["llama-server", "ggml-rpc-server"]
    linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    assert "libllama" not in linked, "a static build needs none of the build tree's libraries"
    ran = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "0c1e570" in ran.stdout + ran.stderr or "version" in (ran.stdout + ran.stderr).lower()
    rpc_help = subprocess.run(
        [str(binary.parent / "ggml-rpc-server"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--host HOST" in rpc_help.stderr, rpc_help.stderr


def test_the_cached_native_build_the_plugin_made_has_both_programs() -> None:
    installation = cached_native_build()
    if installation is None and os.environ.get("GPUSTACK_CORE_TEST_LLAMA_CPP_NATIVE") == "1":
        installation = ensure_native_build()
    if installation is None:
        pytest.skip("no native llama.cpp is cached")
    binary = Path(installation.executable)
    if "seeded_from" in json.loads((binary.parent.parent / "build-info.json").read_text()):
        pytest.skip("the cached native llama.cpp was seeded from a build directory, not built by the plugin")
    _check_build(binary)


@pytest.mark.skipif(
    os.environ.get("GPUSTACK_CORE_TEST_CLEAN_BUILD") != "1",
    reason="set GPUSTACK_CORE_TEST_CLEAN_BUILD=1 to build llama.cpp from the sdist (10-20 min)",
)
@pytest.mark.timeout(3600)
def test_build_from_the_sdist_into_a_clean_directory(tmp_path: Path) -> None:
    engines_dir = Path(os.environ.get("GPUSTACK_CORE_TEST_BUILD_DIR", str(tmp_path / "engines")))
    assert not (engines_dir / "llama.cpp" / "0.3.36").exists(), "the build directory must start clean"
    engine = LlamaCppEngine()
    options = EngineOptions(engines_dir=str(engines_dir))
    installation = engine.install("0.3.36", options)
    binary = Path(installation.executable)
    assert binary == engines_dir / "llama.cpp" / "0.3.36" / "bin" / "llama-server"
    assert installation.origin == "built"
    _check_build(binary)
    assert [i.version for i in engine.installed_versions(options) if i.origin == "built"] == ["0.3.36"]
    assert engine.install("0.3.36", options) == installation  # cached: no second build
