"""Base classes for engine plugins: the version handling an engine shares with others of its kind.

A plugin subclasses one of them and keeps only what is its own (name, owned flags, capabilities,
default version, launch spec):

- :class:`VenvEngine`: a Python engine installed with pip into a virtual environment per version
  (vLLM, SGLang, TensorRT-LLM, vox-box). It declares ``requirements`` and ``program``.
- :class:`VersionedEngine`: versions recorded under the engines directory, and a system install
  found on ``PATH`` (``system_program``) or elsewhere (override ``system_installations``).
  A binary engine that builds or downloads its versions adds an ``install`` that calls
  :func:`~gpustack_core.engines.install_version` (llama.cpp); one that cannot install leaves the
  contract's default, which refuses with a clear message (llama-box, MindIE).

Both are :class:`~gpustack_core.contracts.Engine` subclasses: the contract is unchanged, and any of
their methods can be overridden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from gpustack_core.contracts import Engine
from gpustack_core.errors import EngineNotInstalledError

from .versions import install_venv, list_installations, located_on_path, remove_installation

if TYPE_CHECKING:
    from gpustack_core.types import EngineInstallation, EngineOptions


__all__ = ["TEXT_ENDPOINTS", "VenvEngine", "VersionedEngine"]

#: The OpenAI paths of a text-generation server, for ``EngineCapabilities.openai_endpoints``:
#: add those of the other categories it serves (``/v1/embeddings``, ``/v1/rerank``, ...).
TEXT_ENDPOINTS: tuple[str, ...] = ("/v1/models", "/v1/chat/completions", "/v1/completions")


class VersionedEngine(Engine):
    """An engine whose versions live side by side under the engines directory, after the one
    installed on the system (if any).

    Subclasses set ``name``, ``owned_flags`` and optionally ``system_program``, and implement
    ``capabilities``, ``default_version`` and ``launch_spec``.
    """

    #: A program that, found on ``PATH``, is listed first as version ``"system"`` (origin
    #: ``located``; never removed). ``None``: no system install is looked for on ``PATH``.
    system_program: ClassVar[str | None] = None

    def system_installations(self) -> list[EngineInstallation]:
        """Installations found on the system rather than under the engines directory.

        The default looks for :attr:`system_program` on ``PATH``; override it for an engine
        installed somewhere else (MindIE: ``$MIES_INSTALL_PATH``).

        Returns:
            Located installations (origin ``located``); empty when there are none.
        """
        if self.system_program is None:
            return []
        return located_on_path(self.name, self.system_program)

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """:meth:`system_installations` first (so that a pinned version under the engines directory
        wins in :meth:`locate`), then the complete installations under ``options.engines_dir``,
        oldest version first.

        Parameters:
            options: where versions live.

        Returns:
            The installations; empty when none is found.
        """
        return self.system_installations() + list_installations(options, self.name)

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Delete an installation under the engines directory; a located (system) one is refused.

        Parameters:
            installation: one of :meth:`installed_versions`.
            options: where versions live.

        Raises:
            EngineError: the installation is located on the system or lies outside its directory.
        """
        remove_installation(installation, options)


class VenvEngine(VersionedEngine):
    """A Python engine installed with pip, one virtual environment per version.

    Subclasses declare ``requirements`` and ``program`` besides what :class:`VersionedEngine` asks.
    """

    #: pip requirement specifiers; ``{version}`` is replaced by the version being installed,
    #: e.g. ``("vllm=={version}", "ray[default]")``.
    requirements: ClassVar[tuple[str, ...]] = ()
    #: The program in the environment's ``bin/`` that the installation runs, e.g. ``"vllm"``
    #: (``"python"`` for an engine started as ``python -m module``).
    program: ClassVar[str] = ""

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """``pip install`` the :attr:`requirements` for ``version`` into
        ``<engines_dir>/<name>/<version>/``, from the package index or only from
        ``options.wheelhouse`` (see :func:`~gpustack_core.engines.install_venv`).

        Parameters:
            version: the engine version, e.g. ``"0.7.3"``.
            options: the engines directory, the wheelhouse and whether to stay offline.

        Returns:
            The installation (at once when that version is already installed).

        Raises:
            EngineNotInstalledError: pip failed, or the environment has no :attr:`program`.
        """
        if not self.requirements or not self.program:
            raise EngineNotInstalledError(
                f"engine {self.name!r} ({type(self).__name__}) must declare `requirements` and `program` "
                "to be installed with pip"
            )
        requirements = [requirement.format(version=version) for requirement in self.requirements]
        return install_venv(self.name, version, requirements, self.program, options)
