"""Engines known to the server's plugin host, their capabilities and installed versions."""

from __future__ import annotations

import anyio.to_thread
from pydantic import BaseModel

from gpustack_core.engines import default_engine_options
from gpustack_core.server.store.records import Page
from gpustack_core.types import EngineCapabilities, EngineInstallation

from ._framework import Endpoint, Request

__all__ = ["ENDPOINTS", "EngineView"]


class EngineView(BaseModel):
    """An engine plugin: capabilities, default version, installed versions, and which workers have it."""

    name: str
    plugin: str
    default_version: str
    capabilities: EngineCapabilities
    installed: list[EngineInstallation]
    workers: list[str]
    error: str | None = None


async def list_engines(req: Request) -> Page:
    """List engine plugins with their versions installed in the shared engines directory."""
    host = req.services.host
    options = default_engine_options()
    workers, _ = await req.db(req.services.store.list_workers, 10000, 0)
    views = []
    for engine in host.engines():
        error = None
        installed: list[EngineInstallation] = []
        try:
            installed = await anyio.to_thread.run_sync(engine.installed_versions, options)
        except Exception as exc:  # a plugin's failure is reported, never fatal
            error = f"{type(exc).__name__}: {exc}"
        views.append(
            EngineView(
                name=engine.name,
                plugin=host.owner("engines", engine.name).origin,
                default_version=engine.default_version(),
                capabilities=engine.capabilities(),
                installed=installed,
                workers=[w.name for w in workers if engine.name in w.info.engines],
                error=error,
            )
        )
    return Page(items=views, total=len(views), limit=len(views), offset=0)


ENDPOINTS = (
    Endpoint(
        "GET", "/engines", list_engines, "list engines and installed versions", "engines", list_of=EngineView
    ),
)
