"""The prebuilt llama.cpp runtime: the ``xllamacpp`` wheel from PyPI, no compiler needed.

``xllamacpp`` (Xinference's llama.cpp backend) ships llama.cpp's native C++ server as a CPU wheel
(~33 MB). It is installed with pip into its own virtual environment per version, side by side with
native builds, under ``<engines_dir>/llama.cpp/xllamacpp-<wheel version>/``; the plugin starts it
through ``_prebuilt_server.py`` (llama-server's flags, a subset) with that environment's Python.

It is what a fresh machine uses (installed in well under a minute, against 20+ minutes for a build
from source); a native build (source, CUDA, RPC) is preferred as soon as one is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpustack_core.engines import install_venv
from gpustack_core.errors import EngineNotInstalledError

if TYPE_CHECKING:
    from gpustack_core.types import EngineInstallation, EngineOptions


__all__ = [
    "PREBUILT_DEFAULT_VERSION",
    "PREBUILT_PREFIX",
    "PREBUILT_WHEEL_VERSION",
    "SERVER_SCRIPT",
    "install_prebuilt",
    "is_prebuilt",
    "prebuilt_version",
]

#: Versions of the prebuilt runtime are ``xllamacpp-<wheel version>``.
PREBUILT_PREFIX = "xllamacpp-"
#: The ``xllamacpp`` wheel the plugin was verified against.
PREBUILT_WHEEL_VERSION = "2026.10.11549"
#: The plugin's default version: the prebuilt runtime at the verified wheel.
PREBUILT_DEFAULT_VERSION = f"{PREBUILT_PREFIX}{PREBUILT_WHEEL_VERSION}"
#: The script the environment's Python runs (standard library and ``xllamacpp`` only).
SERVER_SCRIPT = Path(__file__).with_name("_prebuilt_server.py")


def prebuilt_version(wheel_version: str) -> str:
    """The engine version of an ``xllamacpp`` wheel version."""
    return f"{PREBUILT_PREFIX}{wheel_version}"


def is_prebuilt(version_or_installation: str | EngineInstallation) -> bool:
    """Whether a version (or installation) is the prebuilt runtime rather than a native build."""
    version = (
        version_or_installation
        if isinstance(version_or_installation, str)
        else version_or_installation.version
    )
    return version.startswith(PREBUILT_PREFIX)


def install_prebuilt(version: str, options: EngineOptions) -> EngineInstallation:
    """``pip install xllamacpp==<wheel version>`` into ``<engines_dir>/llama.cpp/<version>/``.

    Parameters:
        version: ``xllamacpp-<wheel version>``, e.g. :data:`PREBUILT_DEFAULT_VERSION`.
        options: the engines directory; ``wheelhouse`` installs offline from it.

    Returns:
        The installation; its executable is the environment's Python (the plugin adds the script).

    Raises:
        EngineNotInstalledError: not a prebuilt version, or pip failed (with the log's tail).
    """
    wheel = version.removeprefix(PREBUILT_PREFIX)
    if not is_prebuilt(version) or not wheel:
        raise EngineNotInstalledError(
            f"{version!r} is not a prebuilt llama.cpp version; prebuilt versions are "
            f"{PREBUILT_PREFIX}<xllamacpp wheel version>, e.g. {PREBUILT_DEFAULT_VERSION}"
        )
    return install_venv("llama.cpp", version, [f"xllamacpp=={wheel}"], "python", options)
