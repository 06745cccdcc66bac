"""One server process and one headless Chromium per test module (Debian's ``chromium``, driven by
Playwright for Python through its executable path); this directory is put on ``sys.path``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from console_helpers import ConsoleServer

CHROMIUM = os.environ.get("GPUSTACK_TEST_CHROMIUM", "/usr/bin/chromium")
HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, llama_cpp_installation: Any
) -> Iterator[ConsoleServer]:
    """The server with its embedded worker, the installed engine plugins (llama.cpp's prebuilt runtime
    is installed first, once per engines directory: see ``tests/conftest.py``) and the fake OpenAI
    engine, on a free loopback port."""
    data_dir = tmp_path_factory.mktemp("console-data")
    port = _free_port()
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "console_serve_main.py"), str(data_dir), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {(data_dir / 'server.log').read_text()[-3000:]}")
            time.sleep(0.1)
        password = (data_dir / "initial_admin_password").read_text().strip()
        yield ConsoleServer(
            url=url,
            data_dir=data_dir,
            admin_password=password,
            llama_cpp_version=llama_cpp_installation.version,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; skipped, saying why, when the browser or Playwright is missing."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots go: ``GPUSTACK_CONSOLE_SCREENSHOTS`` (e.g. docs/console) or a temp dir."""
    target = os.environ.get("GPUSTACK_CONSOLE_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
