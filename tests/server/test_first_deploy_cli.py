"""A new user's path with the real CLI in a fresh HOME, no curl but the README's own: the README's
server snippet runs as written (against ``gpustack-core serve`` on a free port) and deploys the tiny
GGUF on the prebuilt llama.cpp runtime; Ctrl-C with ``--keep-engines`` leaves the engine running,
the next ``serve`` adopts it, and Ctrl-C without the flag stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import pytest
from server_helpers import free_port

from gpustack_core.engines import default_engines_dir
from gpustack_core.types import EngineInstallation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent


def readme_server_snippet() -> list[str]:
    """The shell lines of the README's server section (continuation lines joined)."""
    section = README.read_text().split("## Server, workers and the OpenAI-compatible API", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's server section has no bash block"
    return match.group(1).replace("\\\n", " ").strip().splitlines()


class Cli:
    """``gpustack-core`` commands in a fresh HOME against one server port."""

    def __init__(self, home: Path, port: int) -> None:
        self.port = port
        self.home = home
        self.url = f"http://127.0.0.1:{port}"
        drop = ("GPUSTACK_CORE_", "XDG_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(
            HOME=str(home),
            PATH=f"{BIN}:{env.get('PATH', '')}",
            GPUSTACK_CORE_SERVER_URL=self.url,
            # the prebuilt runtime the fixture installed (the benchmark measures a fresh engines dir)
            GPUSTACK_CORE_ENGINES_DIR=str(default_engines_dir()),
        )
        self.env = env

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["gpustack-core", *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"gpustack-core {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def instances(self, deployment: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.run("manage", "instances", deployment, "--json"))[
            "items"
        ]
        return items


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, free_port())


@pytest.fixture
def serve(cli: Cli) -> Iterator[Any]:
    """Start ``gpustack-core serve`` (with extra flags); every one started is interrupted at teardown."""
    started: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []

    def start(*flags: str) -> subprocess.Popen[str]:
        log = (cli.home / f"serve-{len(started)}.log").open("w")
        logs.append(log)
        process = subprocess.Popen(
            ["gpustack-core", "serve", "--port", str(cli.port), *flags],
            env=cli.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        deadline = time.monotonic() + 60
        while "listening on" not in (cli.home / f"serve-{len(started) - 1}.log").read_text():
            assert process.poll() is None, (cli.home / f"serve-{len(started) - 1}.log").read_text()
            assert time.monotonic() < deadline, "serve did not start in 60 s"
            time.sleep(0.2)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for log in logs:
        log.close()


def interrupt(process: subprocess.Popen[str], log: Path) -> str:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, log.read_text()
    return log.read_text()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _embedding_without_curl(cli: Cli, tmp_path: Path) -> None:
    """An embedding GGUF deployed with ``manage deploy`` alone (category detected), answering
    embeddings, and a chat request to it refused with a 400 that says what it serves."""
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    model = write_llama_gguf(tmp_path / "embed.gguf", TinyLlamaSpec(seed=2, pooling="mean"))
    assert "(embedding" in cli.run("manage", "deploy", "embed", f"local:{model}", "--context-length", "512")
    assert "replica 0: running" in cli.run("manage", "instances", "embed", "--wait", "--timeout", "120")
    key = cli.run("keys", "create", "embed-app").strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    r = httpx.post(
        f"{cli.url}/v1/embeddings", json={"model": "embed", "input": ["hi"]}, headers=headers, timeout=60
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 64
    chat = {"model": "embed", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{cli.url}/v1/chat/completions", json=chat, headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "model_category_mismatch"
    (instance,) = cli.instances("embed")
    # --wait: the engine is stopped when it returns (without it, a Ctrl-C with --keep-engines right
    # after could leave it running, and the restarted worker adopted two engines, not one)
    assert "deleted; its instances are stopped" in cli.run("manage", "delete", "embed", "--wait")
    assert gone(instance["pid"]), "the deleted deployment's engine still runs"


def test_readme_snippet_then_ctrl_c_keeps_or_stops_engines(
    llama_cpp_installation: EngineInstallation, cli: Cli, serve: Any, tiny_model: Path, tmp_path: Path
) -> None:
    lines = readme_server_snippet()
    assert lines[0].startswith("gpustack-core serve &")
    first = serve("--keep-engines")
    script = "\n".join(lines[1:])
    script = script.replace("localhost:8080", f"127.0.0.1:{cli.port}").replace(
        "/models/tiny.gguf", str(tiny_model)
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=cli.env,
        cwd=cli.home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"README snippet failed:\n{result.stdout}\n{result.stderr}"
    assert "logged in" in result.stdout
    assert "replica 0: running" in result.stdout
    assert '"object":"chat.completion"' in result.stdout
    assert "usage" in result.stdout
    credentials = cli.home / ".config" / "gpustack-core" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600

    _embedding_without_curl(cli, tmp_path)

    (instance,) = cli.instances("tiny")
    assert instance["state"] == "running"
    pid = instance["pid"]
    # the prebuilt runtime on a fresh machine; a native build instead once one is installed
    program = psutil.Process(pid).cmdline()[0]
    assert program == llama_cpp_installation.executable or program.endswith("/bin/llama-server"), program
    assert program.startswith(str(default_engines_dir())), program

    out = interrupt(first, cli.home / "serve-0.log")
    assert "engines keep running (--keep-engines)" in out
    assert not gone(pid), "the engine stopped although --keep-engines was given"

    second = serve()
    deadline = time.monotonic() + 60
    # the database says running with the old pid from before the restart: the adoption is proven by
    # the new server's embedded worker saying so, with the instance still on the same process after it
    while "adopted 1 running engine" not in (cli.home / "serve-1.log").read_text():
        assert time.monotonic() < deadline, (
            "the restarted server's worker adopted nothing:\n"
            + (cli.home / "serve-1.log").read_text()[-4000:]
        )
        time.sleep(0.5)
    while True:
        (instance,) = cli.instances("tiny")
        if instance["state"] == "running" and instance["pid"] == pid:
            break
        assert instance["state"] not in {"error", "pending"}, instance
        assert time.monotonic() < deadline, f"not adopted: {instance}"
        time.sleep(0.5)

    out = interrupt(second, cli.home / "serve-1.log")
    assert "its engines were stopped" in out
    assert gone(pid), "the engine outlived Ctrl-C on serve"
    cli.run("logout")
    assert "servers" in credentials.read_text()
    assert cli.url not in credentials.read_text()
