"""Turning an assignment into a launch spec: download the files, find the engine, build the spec."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from gpustack_core.plugins import PluginHost
from gpustack_core.types import (
    Device,
    DownloadProgress,
    DownloadResult,
    EngineInstallation,
    EngineOptions,
    LaunchRequest,
    LaunchSpec,
    PeerCache,
    Placement,
    SourceOptions,
)

from .protocol import Assignment

__all__ = [
    "DownloadTracker",
    "EngineChoice",
    "build_launch_spec",
    "choose_engine",
    "download_model",
    "free_port",
    "install_engine",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class DownloadTracker:
    """Latest download progress per instance, written from download threads, read by the agent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, int | float | str | None]] = {}
        self._files: dict[str, dict[str, tuple[int, int | None]]] = {}
        self._rates: dict[str, dict[str, float | None]] = {}

    def callback(self, instance_id: str) -> Callable[[DownloadProgress], None]:
        """A progress callback for one instance's download."""

        def on_progress(event: DownloadProgress) -> None:
            with self._lock:
                files = self._files.setdefault(instance_id, {})
                files[event.file] = (event.downloaded_bytes, event.total_bytes)
                rates = self._rates.setdefault(instance_id, {})
                rates[event.file] = None if event.done else event.bytes_per_second
                totals = [t for _, t in files.values()]
                downloaded = sum(d for d, _ in files.values())
                total = None if None in totals else sum(t or 0 for t in totals)
                rate = sum(r for r in rates.values() if r) or None
                self._latest[instance_id] = {
                    "file": event.file,
                    "downloaded_bytes": downloaded,
                    "total_bytes": total,
                    "percent": round(100.0 * downloaded / total, 1) if total else None,
                    "bytes_per_second": rate,
                    "eta_seconds": round((total - downloaded) / rate, 1) if total and rate else None,
                }

        return on_progress

    def take(self, instance_id: str) -> dict[str, int | float | str | None] | None:
        """The latest progress of an instance (and forget it), or ``None``."""
        with self._lock:
            return self._latest.pop(instance_id, None)


def download_model(
    host: PluginHost,
    assignment: Assignment,
    cache_dir: Path,
    progress: Callable[[DownloadProgress], None],
    peers: tuple[PeerCache, ...] = (),
) -> DownloadResult:
    """Resolve, select and download the deployment's model files (blocking); ``peers`` (other
    workers' caches) are tried for each file before the source."""
    ref = assignment.deployment.model
    source = host.model_source(ref.source)
    options = SourceOptions(cache_dir=str(cache_dir), peers=peers)
    with host.guard("sources", source.name, "resolve()"):
        metadata = source.resolve(ref, options)
    with host.guard("sources", source.name, "select_files()"):
        files = source.select_files(metadata, ref)
    with host.guard("sources", source.name, "download()"):
        return source.download(metadata, files, options, progress)


class EngineChoice(NamedTuple):
    """The engine version an assignment runs on, and its installation when it is installed."""

    engine: str
    version: str
    installation: EngineInstallation | None


def choose_engine(host: PluginHost, assignment: Assignment, engines_dir: Path) -> EngineChoice:
    """The installed version the deployment runs on, or the version to install first (blocking)."""
    deployment = assignment.deployment
    engine = host.engine(deployment.engine)
    options = EngineOptions(engines_dir=str(engines_dir))
    with host.guard("engines", engine.name, "locate()"):
        installation = engine.locate(deployment.engine_version, options)
    if installation is not None:
        return EngineChoice(engine.name, installation.version, installation)
    with host.guard("engines", engine.name, "default_version()"):
        version = deployment.engine_version or engine.default_version()
    return EngineChoice(engine.name, version, None)


def install_engine(host: PluginHost, engine_name: str, version: str, engines_dir: Path) -> EngineInstallation:
    """Install one engine version through its plugin (blocking; a download or a build)."""
    engine = host.engine(engine_name)
    with host.guard("engines", engine.name, "install()"):
        return engine.install(version, EngineOptions(engines_dir=str(engines_dir)))


def build_launch_spec(
    host: PluginHost,
    assignment: Assignment,
    paths: tuple[str, ...],
    devices: tuple[Device, ...],
    engines_dir: Path,
    port: int,
    bind_host: str = "127.0.0.1",
    work_dir: Path | None = None,
    rpc_servers: tuple[str, ...] = (),
) -> LaunchSpec:
    """Find (or install) the engine version and ask the engine plugin for the launch spec (blocking).

    ``work_dir`` is created and handed to the engine as the instance's own writable directory
    (generated configs such as MindIE's live there). For a multi-worker instance the request
    carries the assignment's rank (``node_rank``), ``node_count`` and ``head_address``, and for
    the head the subordinates' ``host:port`` as ``rpc_servers`` (rank order).
    """
    deployment = assignment.deployment
    engine = host.engine(deployment.engine)
    options = EngineOptions(engines_dir=str(engines_dir))
    with host.guard("engines", engine.name, "locate()"):
        installation = engine.locate(deployment.engine_version, options)
    if installation is None:
        version = deployment.engine_version or engine.default_version()
        with host.guard("engines", engine.name, "install()"):
            installation = engine.install(version, options)
    if assignment.placement is None:
        raise ValueError(f"instance {assignment.instance_id} has no placement")
    placement = Placement.model_validate(assignment.placement)
    me = placement.worker if assignment.rank == 0 else placement.subordinate_workers[assignment.rank - 1]
    group = bool(placement.subordinate_workers)
    wanted = {(d.accelerator, d.index) for d in placement.devices if not group or d.worker == me}
    chosen = tuple(d for d in devices if (d.accelerator, d.index) in wanted)
    env: dict[str, str] = {}
    for accelerator in host.accelerators():
        mine = [d for d in chosen if d.accelerator == accelerator.name]
        if mine or accelerator.name in {d.accelerator for d in devices}:
            with host.guard("accelerators", accelerator.name, "visibility_env()"):
                env.update(accelerator.visibility_env(mine))
    request = LaunchRequest(
        deployment=deployment,
        placement=placement,
        installation=installation,
        model_paths=paths,
        devices=chosen,
        visibility_env=env,
        host=bind_host,
        port=port,
        rpc_servers=rpc_servers,
        node_rank=assignment.rank,
        node_count=assignment.node_count,
        head_address=assignment.head_address,
        group=tuple(assignment.group),
        work_dir=str(work_dir) if work_dir is not None else None,
    )
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with host.guard("engines", engine.name, "launch_spec()"):
        return engine.launch_spec(request)
