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
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gpustack_core.engines import install_lock, record_installation
from gpustack_core.engines.versions import MARKER_FILE
from gpustack_core.errors import EngineNotInstalledError
from gpustack_core.types import EngineInstallation, EngineOptions

__all__ = ["CMAKE_ARGS_ENV", "DEFAULT_CMAKE_ARGS", "ENGINE_NAME", "build_llama_server", "seed_from_build"]

ENGINE_NAME = "llama.cpp"
#: Extra cmake arguments, shell-quoted, e.g. ``-DGGML_CUDA=ON`` or ``-DGGML_RPC=ON``.
CMAKE_ARGS_ENV = "GPUSTACK_CORE_LLAMA_CPP_CMAKE_ARGS"
#: Static binary, no libcurl (no downloads from the engine), server only.
DEFAULT_CMAKE_ARGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
)


def _run(argv: Sequence[str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise EngineNotInstalledError(f"{what} failed (exit {result.returncode}); log {log}:\n{tail}")


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


def _finish(directory: Path, version: str, facts: dict[str, object]) -> EngineInstallation:
    (directory / "build-info.json").write_text(json.dumps(facts, indent=2))
    installation = EngineInstallation(
        engine=ENGINE_NAME,
        version=version,
        executable=str(directory / "bin" / "llama-server"),
        prefix=str(directory),
        origin="built",
    )
    record_installation(installation, directory)
    return installation


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
    with install_lock(options, ENGINE_NAME, version) as directory:
        if (directory / MARKER_FILE).exists():
            return EngineInstallation.model_validate_json((directory / MARKER_FILE).read_text())
        work = Path(tempfile.mkdtemp(prefix=f".build-{version}-", dir=directory.parent))
        log = directory.parent / f".{version}.build.log"
        log.write_text("")
        try:
            download = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
            download += ["--no-binary", ":all:", "--no-deps", f"llama-cpp-python=={version}", "-d", str(work)]
            if options.wheelhouse:
                download += ["--no-index", "--find-links", options.wheelhouse]
            _run(download, f"downloading the llama-cpp-python {version} sdist", log)
            archives = sorted(work.glob("llama_cpp_python-*.tar.gz"))
            if not archives:
                raise EngineNotInstalledError(
                    f"pip did not save a llama-cpp-python {version} sdist; log {log}"
                )
            with tarfile.open(archives[0]) as archive:
                archive.extractall(work, filter="data")
            source = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("llama_cpp_python-"))
            llama = source / "vendor" / "llama.cpp"
            extra = shlex.split(os.environ.get(CMAKE_ARGS_ENV, ""))
            all_args = [*DEFAULT_CMAKE_ARGS, *extra, *cmake_args]
            _run(["cmake", "-S", str(llama), "-B", str(work / "build"), *all_args], "cmake configure", log)
            targets = ["llama-server"]
            if any(arg.upper() == "-DGGML_RPC=ON" for arg in all_args):
                targets.append("rpc-server")
            build = [
                "cmake",
                "--build",
                str(work / "build"),
                "--config",
                "Release",
                "-j",
                str(jobs or os.cpu_count() or 1),
            ]
            for target in targets:
                build += ["--target", target]
            _run(build, "building llama-server", log)
            if directory.exists():
                shutil.rmtree(directory)
            (directory / "bin").mkdir(parents=True)
            for target in targets:
                shutil.copy2(work / "build" / "bin" / target, directory / "bin" / target)
            facts: dict[str, object] = {
                "llama_cpp_python": version,
                "llama_cpp_commit": _vendored_commit(source, version),
                "cmake_args": all_args,
                "targets": targets,
            }
            return _finish(directory, version, facts)
        except BaseException:
            if not (directory / MARKER_FILE).exists():
                shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)


def seed_from_build(version: str, build_dir: Path, options: EngineOptions) -> EngineInstallation:
    """Cache an existing cmake build of llama.cpp (``build_dir/bin/llama-server`` and the shared
    libraries beside it) as ``version``, instead of building again.

    Raises:
        EngineNotInstalledError: no ``llama-server`` there, or it cannot find its libraries.
    """
    binary = build_dir / "bin" / "llama-server"
    if not binary.is_file():
        raise EngineNotInstalledError(f"{binary} does not exist: build the llama-server target first")
    with install_lock(options, ENGINE_NAME, version) as directory:
        if (directory / MARKER_FILE).exists():
            return EngineInstallation.model_validate_json((directory / MARKER_FILE).read_text())
        if directory.exists():
            shutil.rmtree(directory)
        (directory / "bin").mkdir(parents=True)
        try:
            shutil.copy2(binary, directory / "bin" / "llama-server")
            for library in (build_dir / "bin").glob("lib*.so*"):
                shutil.copy2(library, directory / "bin" / library.name, follow_symlinks=True)
            env = {**os.environ, "LD_LIBRARY_PATH": str(directory / "bin")}
            ldd = subprocess.run(
                ["ldd", str(directory / "bin" / "llama-server")],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if "not found" in ldd.stdout:
                raise EngineNotInstalledError(f"the seeded llama-server misses libraries:\n{ldd.stdout}")
            return _finish(directory, version, {"llama_cpp_python": version, "seeded_from": str(build_dir)})
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
