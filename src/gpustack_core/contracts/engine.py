"""The engine interface: one object per inference engine (vLLM, llama.cpp, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from ..errors import EngineNotInstalledError

if TYPE_CHECKING:  # the value types (pydantic) load on use: listing plugins does not need them
    from ..types import EngineCapabilities, EngineInstallation, EngineOptions, LaunchRequest, LaunchSpec

__all__ = ["Engine"]


class Engine(ABC):
    """Knows one inference engine: what it serves, where its versions are, and how to launch it.

    Register instances through :func:`gpustack_core.hookspecs.gpustack_register_engines`.
    A plugin usually subclasses a base of the engine plugin kit (:mod:`gpustack_core.engines`):
    ``VenvEngine`` (installed with pip, one virtual environment per version) or ``VersionedEngine``
    (versions under the engines directory and a system install), which implement the version
    methods, and writes ``capabilities``, ``default_version`` and ``launch_spec`` itself.
    """

    #: Unique plugin-object name, e.g. ``"vllm"``, ``"llama.cpp"``.
    name: ClassVar[str] = ""
    #: Flags the plugin sets itself; users may not pass them in ``Deployment.extra_args``.
    owned_flags: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def capabilities(self) -> EngineCapabilities:
        """What this engine serves (formats, categories, vendors) and how it spreads (TP, multi-node).

        Returns:
            A constant description; the scheduler and server use it to match deployments to engines.
        """

    @abstractmethod
    def default_version(self) -> str:
        """The engine version this plugin was verified against and installs when none is pinned."""

    @abstractmethod
    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        """Versions of this engine installed under ``options.engines_dir`` or located on the system.

        Parameters:
            options: where versions live.

        Returns:
            Installations ordered by version, oldest first. Empty when none is found; never raises
            because the engine is absent.
        """

    def locate(self, version: str | None, options: EngineOptions) -> EngineInstallation | None:
        """Find an installed version.

        Parameters:
            version: the pinned version, or ``None`` for :meth:`default_version` or else the newest.
            options: where versions live.

        Returns:
            The installation, or ``None`` when that version is not installed.
        """
        installed = self.installed_versions(options)
        wanted = version or self.default_version()
        for installation in installed:
            if installation.version == wanted:
                return installation
        if version is None and installed:
            return installed[-1]
        return None

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """Install ``version`` into its own environment under ``options.engines_dir``.

        Side by side with other versions; from the package index or ``options.wheelhouse``.

        Parameters:
            version: the engine version to install, e.g. ``"0.8.5"``.
            options: where versions live, and the offline wheelhouse if any.

        Returns:
            The new installation.

        Raises:
            EngineNotInstalledError: the plugin cannot install this engine here (say what to do).
        """
        raise EngineNotInstalledError(
            f"engine {self.name!r} cannot install version {version!r} itself; install it and make it "
            "locatable (see the plugin's README)"
        )

    def remove(self, installation: EngineInstallation, options: EngineOptions) -> None:
        """Remove an installed version that this plugin installed. Located system installs are refused.

        Parameters:
            installation: one of :meth:`installed_versions`.
            options: where versions live.

        Raises:
            EngineError: the installation was not installed by this plugin or could not be removed.
        """
        raise EngineNotInstalledError(f"engine {self.name!r} does not support removing versions")

    @abstractmethod
    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """Build the process to start for one replica (or one node of it) on one worker.

        Parameters:
            request: deployment, placement, installation, local model paths, devices with their
                visibility environment, the port to listen on, and multi-node facts.

        Returns:
            argv, env (including ``request.visibility_env``), port, served model name, and the
            readiness and health probes.

        Raises:
            EngineArgumentError: ``request.deployment.extra_args`` holds an owned or malformed flag.
        """

    def validate_extra_args(self, args: Sequence[str]) -> tuple[str, ...]:
        """Check user-supplied arguments: owned flags are refused, unknown flags pass through.

        Every spelling counts (``--flag value``, ``--flag=value``, short aliases listed in
        ``owned_flags``); a negative number is a value, not a flag. Override only for an engine
        whose arguments have another shape (MindIE's config overrides).

        Parameters:
            args: ``Deployment.extra_args``, e.g. ``("--ctx-size", "4096")`` or ``("--ctx-size=4096",)``.

        Returns:
            The arguments unchanged, as a tuple.

        Raises:
            EngineArgumentError: naming the flag and why it is refused.
        """
        from gpustack_core.engines.flags import refuse_owned_flags  # engines imports contracts

        return refuse_owned_flags(self.name, args, self.owned_flags)
