"""An engine plugin for controller tests: launches ``gpustack_core.testing.fake_engine``, a tiny
real HTTP server process with ``/health`` and ``/v1/models``; with ``extra_args=["--openai"]`` it
launches the gateway's fake OpenAI engine instead (chat completions that report token usage)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gpustack_core import hookimpl
from gpustack_core.contracts import Engine
from gpustack_core.engines import install_version, list_installations, run_logged
from gpustack_core.plugins import PluginHost
from gpustack_core.types import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    HttpProbe,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
)

__all__ = ["FakeEngine", "make_host"]


class FakeEngine(Engine):
    """Serves any model file with the fake engine process."""

    name = "fake"
    owned_flags = frozenset({"--port"})

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            formats=(ModelFormat.GGUF, ModelFormat.OTHER, ModelFormat.SAFETENSORS),
            categories=(ModelCategory.LLM,),
            vendors=("cpu",),
            cpu_offload=True,
        )

    def default_version(self) -> str:
        return "1.0"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        located = EngineInstallation(
            engine="fake", version="1.0", executable=sys.executable, origin="located"
        )
        return [located, *list_installations(options, "fake")]

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        """Any other version "builds" in two logged steps of ~1.5 s each (for the installing state)."""

        def populate(directory: Path, log: Path) -> None:
            step = "import sys, time; print('compiling', sys.argv[1], flush=True); time.sleep(1.5)"
            for part in ("part-a", "part-b"):
                run_logged([sys.executable, "-c", step, part], f"building {part}", log)
            (directory / "bin").mkdir()
            program = directory / "bin" / "fake-python"
            program.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
            program.chmod(0o755)

        return install_version(
            options,
            "fake",
            version,
            populate,
            executable="bin/fake-python",
            what=f"fake {version}",
            origin="built",
        )

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        served = request.deployment.served_model_name or request.deployment.name
        if "--openai" in request.deployment.extra_args:
            # The gateway's fake OpenAI engine: chat completions with token usage.
            return LaunchSpec(
                argv=(
                    request.installation.executable,
                    "-m",
                    "gpustack_core.gateway.fake_engine",
                    "--port",
                    str(request.port),
                    "--name",
                    served,
                ),
                env=dict(request.visibility_env),
                port=request.port,
                served_model_name=served,
                readiness=HttpProbe(path="/_fake/stats"),
                health=HttpProbe(path="/_fake/stats"),
                ready_timeout_s=30,
            )
        argv = (
            request.installation.executable,
            "-m",
            "gpustack_core.testing.fake_engine",
            "--port",
            str(request.port),
            *request.deployment.extra_args,
        )
        return LaunchSpec(
            argv=argv,
            env=dict(request.visibility_env),
            port=request.port,
            served_model_name=request.deployment.served_model_name or request.deployment.name,
            ready_timeout_s=30,
        )


class _Plugin:
    @hookimpl
    def gpustack_register_engines(self, register: Any) -> None:
        register(FakeEngine())


def make_host() -> PluginHost:
    """Installed plugins (CPU accelerator, local source, built-in scheduler) plus the fake engine."""
    return PluginHost(plugins=[("engines", "fake-engine", _Plugin())], environ={})
