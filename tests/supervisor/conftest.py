"""Fixtures for supervisor tests: anyio backend, free ports and fake-engine launch specs. Helpers
live in ``supervisor_helpers`` (imported by name: this directory is put on ``sys.path``)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpustack_core.types import HttpProbe, LaunchSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_spec() -> Callable[..., LaunchSpec]:
    """Build a LaunchSpec for the fake engine with extra options."""

    def build(*options: str, port: int | None = None, ready_timeout_s: float = 30.0) -> LaunchSpec:
        chosen = port or free_port()
        argv = (sys.executable, "-m", "gpustack_core.testing.fake_engine", "--port", str(chosen), *options)
        return LaunchSpec(
            argv=argv,
            port=chosen,
            served_model_name="fake",
            readiness=HttpProbe(path="/health"),
            health=HttpProbe(path="/health", timeout_s=1.0),
            ready_timeout_s=ready_timeout_s,
        )

    return build
