"""Serve the application for the browser tests: installed plugins plus an OpenAI-speaking fake engine.

Usage: python console_serve_main.py DATA_DIR PORT

The engine ``fake-openai`` launches the gateway's fake engine (a real process answering chat with
streaming, embeddings, rerank, images and audio), for every model category.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from server_fake_engine import FakeEngine
from server_helpers import fast_config

from gpustack_core import hookimpl
from gpustack_core.plugins import PluginHost
from gpustack_core.server.serving import serve
from gpustack_core.types import EngineCapabilities, LaunchRequest, LaunchSpec, ModelCategory, ModelFormat


class OpenAIFakeEngine(FakeEngine):
    """The fake OpenAI engine for every category (no ``--openai`` argument needed)."""

    name = "fake-openai"

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            formats=(ModelFormat.GGUF, ModelFormat.OTHER, ModelFormat.SAFETENSORS),
            categories=tuple(ModelCategory),
            vendors=("cpu",),
            cpu_offload=True,
        )

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        deployment = request.deployment.model_copy(update={"extra_args": ("--openai",)})
        return super().launch_spec(request.model_copy(update={"deployment": deployment}))


class _Plugin:
    @hookimpl
    def gpustack_register_engines(self, register: Any) -> None:
        register(OpenAIFakeEngine())


def main() -> None:
    """Serve until SIGTERM; the server stops its engines on the way out."""
    logging.basicConfig(level=logging.WARNING)
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    config = fast_config(data_dir, None, port=port, keep_engines_on_exit=False)
    host = PluginHost(plugins=[("engines", "fake-openai", _Plugin())], environ={})
    anyio.run(lambda: serve(config, host=host, log_level="warning", on_started=print))


if __name__ == "__main__":
    main()
