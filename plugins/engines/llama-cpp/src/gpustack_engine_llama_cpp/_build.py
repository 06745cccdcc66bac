"""Building ``llama-server`` from the llama-cpp-python source distribution on the package index.

The sdist of ``llama-cpp-python==V`` vendors the llama.cpp sources it binds (``vendor/llama.cpp``);
building its ``llama-server`` target with cmake needs nothing outside the package index. The
result is cached in ``<engines_dir>/llama.cpp/<V>/bin/`` (see
:mod:`gpustack_core.engines.versions`), keyed by the llama-cpp-python version.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gpustack_core.engines import install_version, run_logged
from gpustack_core.errors import EngineNotInstalledError

if TYPE_CHECKING:
    from gpustack_core.types import EngineInstallation, EngineOptions


__all__ = [
    "CMAKE_ARGS_ENV",
    "DEFAULT_CMAKE_ARGS",
    "ENGINE_NAME",
    "RPC_SERVER_NAMES",
    "build_llama_server",
    "seed_from_build",
]

ENGINE_NAME = "llama.cpp"
#: The program of an installation, relative to its version's directory.
EXECUTABLE = "bin/llama-server"
#: Extra cmake arguments, shell-quoted, e.g. ``-DGGML_CUDA=ON`` or ``-DGGML_RPC=ON``.
CMAKE_ARGS_ENV = "GPUSTACK_CORE_LLAMA_CPP_CMAKE_ARGS"
#: The RPC server's program name: ``ggml-rpc-server`` since llama.cpp moved it to ``tools/rpc``
#: (``set(TARGET ggml-rpc-server)`` at 0c1e57098, llama-cpp-python 0.3.36), ``rpc-server`` before.
RPC_SERVER_NAMES: tuple[str, ...] = ("ggml-rpc-server", "rpc-server")
#: Static binaries, no libcurl (no downloads from the engine): ``llama-server`` and, with RPC (a
#: few seconds of build more), the RPC server that subordinate workers of a multi-worker replica run.
DEFAULT_CMAKE_ARGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DGGML_RPC=ON",
)


def _vendored_commit(source: Path, version: str) -> str | None:
    """The llama.cpp commit the sdist's CHANGELOG names for ``version``, if any."""
    try:
        text = (source / "CHANGELOG.md").read_text(errors="replace")
    except OSError:
        return None
    section = re.search(rf"## \[{re.escape(version)}\](.*?)(?:\n## \[|\Z)", text, re.S)
    if section is None:
        return None
    commit = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section.group(1))
    return commit.group(1) if commit else None


def _rpc_target(llama_cpp: Path) -> str:
    """The cmake target (and program name) of the RPC server in the llama.cpp tree ``llama_cpp``."""
    for cmake_lists in (
        llama_cpp / "tools" / "rpc" / "CMakeLists.txt",
        llama_cpp / "examples" / "rpc" / "CMakeLists.txt",
    ):
        try:
            found = re.search(r"set\(TARGET\s+([\w-]+)\)", cmake_lists.read_text(errors="replace"))
        except OSError:
            continue
        if found:
            return found.group(1)
    return RPC_SERVER_NAMES[-1]


def _cache(
    version: str, options: EngineOptions, populate: Callable[[Path, Path], None], what: str
) -> EngineInstallation:
    """Fill ``<engines_dir>/llama.cpp/<version>/`` with ``populate``, all or nothing."""
    return install_version(
        options,
        ENGINE_NAME,
        version,
        populate,
        executable=EXECUTABLE,
        what=what,
        origin="built",
        log_name="build",
    )


def build_llama_server(
    version: str,
    options: EngineOptions,
    *,
    cmake_args: Sequence[str] = (),
    jobs: int | None = None,
) -> EngineInstallation:
    """Download the llama-cpp-python ``version`` sdist, build its ``llama-server``, and cache it.

    Parameters:
        version: llama-cpp-python version, e.g. ``"0.3.36"``.
        options: the engines directory; ``wheelhouse`` makes the download offline
            (``pip download --no-index --find-links``; the sdist must be in it).
        cmake_args: added after :data:`DEFAULT_CMAKE_ARGS` and ``$GPUSTACK_CORE_LLAMA_CPP_CMAKE_ARGS``.
        jobs: parallel build jobs; default: the CPU count.

    Returns:
        The cached installation (at once when that version is already built).

    Raises:
        EngineNotInstalledError: download, cmake or the build failed (with the log's tail).
    """
    if options.offline and not options.wheelhouse:
        raise EngineNotInstalledError(
            f"cannot build llama.cpp {version} offline without a wheelhouse holding "
            f"llama_cpp_python-{version}.tar.gz (pip download --no-binary :all: --no-deps "
            f"llama-cpp-python=={version} -d DIR on a connected machine)"
        )
    if shutil.which("cmake") is None:
        raise EngineNotInstalledError("building llama.cpp needs cmake and a C++ compiler; install them first")

    def build(directory: Path, log: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=f".build-{version}-", dir=directory.parent))
        try:
            download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
            download += ["--no-binary", ":all:", "--no-deps", f"llama-cpp-python=={version}", "-d", str(work)]
            if options.wheelhouse:
                download += ["--no-index", "--find-links", options.wheelhouse]
            run_logged(download, f"downloading the llama-cpp-python {version} sdist", log)
            archives = sorted(work.glob("llama_cpp_python-*.tar.gz"))
            if not archives:
                raise EngineNotInstalledError(f"pip saved no llama-cpp-python {version} sdist; log {log}")
            import tarfile  # on use: only a source build unpacks an sdist

            with tarfile.open(archives[0]) as archive:
                archive.extractall(work, filter="data")
            source = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("llama_cpp_python-"))
            extra = shlex.split(os.environ.get(CMAKE_ARGS_ENV, ""))
            all_args = [*DEFAULT_CMAKE_ARGS, *extra, *cmake_args]
            llama_cpp = source / "vendor" / "llama.cpp"
            configure = ["cmake", "-S", str(llama_cpp), "-B", str(work / "build")]
            run_logged([*configure, *all_args], "cmake configure", log)
            targets = ["llama-server"]
            rpc = [arg.upper() for arg in all_args if arg.upper().startswith("-DGGML_RPC=")]
            if rpc and rpc[-1] in ("-DGGML_RPC=ON", "-DGGML_RPC=1", "-DGGML_RPC=TRUE"):
                targets.append(_rpc_target(llama_cpp))
            build = ["cmake", "--build", str(work / "build"), "--config", "Release"]
            build += ["-j", str(jobs or os.cpu_count() or 1)]
            for target in targets:
                build += ["--target", target]
            run_logged(build, f"building {' and '.join(targets)}", log)
            (directory / "bin").mkdir()
            for target in targets:
                shutil.copy2(work / "build" / "bin" / target, directory / "bin" / target)
            facts = {
                "llama_cpp_python": version,
                "llama_cpp_commit": _vendored_commit(source, version),
                "cmake_args": all_args,
                "targets": targets,
            }
            (directory / "build-info.json").write_text(json.dumps(facts, indent=2))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return _cache(version, options, build, f"a build of the llama-cpp-python {version} sdist")


def seed_from_build(version: str, build_dir: Path, options: EngineOptions) -> EngineInstallation:
    """Cache an existing cmake build of llama.cpp (``build_dir/bin/llama-server``, its RPC server when
    built, and the shared libraries beside it) as ``version``, instead of building again.

    Raises:
        EngineNotInstalledError: no ``llama-server`` there, or it cannot find its libraries.
    """
    binary = build_dir / "bin" / "llama-server"
    if not binary.is_file():
        raise EngineNotInstalledError(f"{binary} does not exist: build the llama-server target first")

    def seed(directory: Path, log: Path) -> None:
        (directory / "bin").mkdir()
        shutil.copy2(binary, directory / "bin" / "llama-server")
        for name in RPC_SERVER_NAMES:
            if (build_dir / "bin" / name).is_file():
                shutil.copy2(build_dir / "bin" / name, directory / "bin" / name)
        for library in (build_dir / "bin").glob("lib*.so*"):
            shutil.copy2(library, directory / "bin" / library.name, follow_symlinks=True)
        env = {**os.environ, "LD_LIBRARY_PATH": str(directory / "bin")}
        ldd = subprocess.run(
            ["ldd", str(directory / EXECUTABLE)], capture_output=True, text=True, env=env, check=False
        )
        if "not found" in ldd.stdout:
            raise EngineNotInstalledError(f"the seeded llama-server misses libraries:\n{ldd.stdout}")
        facts = {"llama_cpp_python": version, "seeded_from": str(build_dir)}
        (directory / "build-info.json").write_text(json.dumps(facts, indent=2))

    return _cache(version, options, seed, f"the llama.cpp build in {build_dir}")
