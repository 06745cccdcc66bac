"""Scale-from-zero wait: a deployment at zero replicas, one request, how long it was held.

Two measurements, side by side in one run:

- ``server``: the reference server in this process (embedded worker, real engine process), a
  deployment of the tiny GGUF with a scale-to-zero policy; each cycle scales it to zero, waits for
  its instance to stop, sends one chat completion and records the gateway's hold
  (``x-gpustack-cold-start-ms``) and the request's total time. ``--engine fake`` uses the tests'
  fake engine plugin (a real process that answers at once: the control plane's share of the wait);
  ``--engine llama.cpp`` uses the installed llama.cpp plugin (needs its runtime).
- ``llama.cpp alone``: when the ``xllamacpp`` wheel (llama.cpp's native server, CPU) is installed,
  the time from starting its server on the tiny GGUF to the first answered chat completion — the
  engine's own share of a cold start.

``python -m benchmarks cold_start -- --cycles 5 --engine fake``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):8.0f} | {min(values):8.0f} | {max(values):8.0f}"


async def _server_cycles(
    model_path: Path, engine: str, cycles: int, data_dir: Path
) -> tuple[list[float], list[float]]:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "server"))
    from server_helpers import fast_config, start_app

    from gpustack_core.server.store.governance import GovernanceStore

    config = fast_config(data_dir, scale_to_zero_check_interval_s=3600, cold_start_hold_timeout_s=300)
    held: list[float] = []
    total: list[float] = []
    async for server in start_app(config):
        extra = ["--openai"] if engine == "fake" else []
        body = {"name": "cold", "model": f"local:{model_path}", "engine": engine, "extra_args": extra}
        r = await server.api("POST", "/deployments", json=body)
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]
        key = (await server.api("POST", "/api-keys", json={"name": "bench"})).json()["key"]
        headers = {"Authorization": f"Bearer {key}"}
        await server.api("PUT", "/scale-to-zero/cold", json={"idle_timeout_s": 3600})
        gov = GovernanceStore(server.app.state.services.store.engine)
        chat: dict[str, Any] = {
            "model": "cold",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        }
        if engine == "fake":
            chat["fake_tokens"] = 4

        async def instances(server: Any = server) -> list[dict[str, Any]]:
            r = await server.api("GET", "/instances", params={"deployment": "cold"})
            items: list[dict[str, Any]] = r.json()["items"]
            return items

        async def running() -> bool:
            items = await instances()
            return bool(items) and items[0]["state"] == "running"

        await server.wait_for(running, timeout=300)
        for _ in range(cycles):
            assert gov.set_replicas_if(dep_id, 1, 0)

            async def gone() -> bool:
                return not await instances()

            await server.wait_for(gone, timeout=120)
            await server.app.state.gateway.scale_to_zero.stop_idle()  # refresh its view: replicas 0
            started = time.perf_counter()
            r = await server.client.post("/v1/chat/completions", json=chat, headers=headers, timeout=600)
            total.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text
            held.append(float(r.headers["x-gpustack-cold-start-ms"]))
        await server.api("DELETE", "/deployments/cold")
    return held, total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _xllamacpp_cycles(model_path: Path, cycles: int) -> list[float] | None:
    try:
        import xllamacpp
    except ImportError:
        return None
    out = []
    for _ in range(cycles):
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.hostnames = ["127.0.0.1"]
        params.port = _free_port()
        params.n_ctx = 256
        started = time.perf_counter()
        server = xllamacpp.Server(params)
        url = f"http://127.0.0.1:{params.port}/v1/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
        while True:
            try:
                if httpx.post(url, json=body, timeout=60).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        out.append((time.perf_counter() - started) * 1000)
        del server
    return out


def main(argv: list[str]) -> None:
    """Run both measurements and print a table (milliseconds)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks cold_start --")
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--engine", default="fake", help="fake (the tests' fake engine process) or llama.cpp")
    args = p.parse_args(argv)
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    with tempfile.TemporaryDirectory() as tmp:
        model = write_llama_gguf(Path(tmp) / "tiny.gguf", TinyLlamaSpec.tiny())
        size = model.stat().st_size
        held, total = asyncio.run(_server_cycles(model, args.engine, args.cycles, Path(tmp) / "data"))
        alone = _xllamacpp_cycles(model, args.cycles)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"# {now}, {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}; tiny GGUF ({size} bytes), "
        f"{args.cycles} cycles"
    )
    print("| measurement | median ms | min ms | max ms |")
    print("|---|---:|---:|---:|")
    print(f"| server, engine {args.engine}: request held (x-gpustack-cold-start-ms) | {_fmt(held)} |")
    print(f"| server, engine {args.engine}: request total | {_fmt(total)} |")
    if alone is None:
        print("| llama.cpp alone (xllamacpp): start to first answer | not installed |")
    else:
        print(f"| llama.cpp alone (xllamacpp): start to first answer | {_fmt(alone)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
