"""Requests per second of tiny non-streamed completions: straight to the engine vs through proxies.

``python -m benchmarks gateway_throughput [-- --concurrency 64 --seconds 2 --rounds 4
--gateway-workers 1 2 --server-workers 1 2 --target litellm=http://127.0.0.1:4000]``

Processes as deployed: the fake engine (one uvicorn process), the gateway (``benchmarks.proxy``'s
``--serve-gateway``, uvicorn, one route; ``--gateway-workers N`` runs N processes on one port with
``SO_REUSEPORT``), with ``--server-workers N`` the reference server itself (``gpustack-core serve
--gateway-workers N``: store-backed keys, usage metered into its database, see
``benchmarks._server_target``), and this process as the load generator (asyncio, keep-alive HTTP/1.1, reads
``Content-Length`` bodies). Each round gives every target a block of ``--seconds`` at the given
concurrency, in the same order; the table shows the median req/s and the median of the per-round
ratios to the direct engine (the machine is shared). ``--target NAME=URL`` adds any other
OpenAI-compatible proxy already running (for example LiteLLM configured with the engine printed at
start as ``bench-model``), sent the same body with ``Authorization: Bearer --target-key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from urllib.parse import urlsplit

from benchmarks._server_target import ServerTarget
from benchmarks.proxy import API_KEY, MODEL, _cpu_seconds, _start

__all__ = ["main"]


class _Client:
    """Keep-alive HTTP/1.1 POSTs of one body; each response read by its Content-Length."""

    def __init__(self, host: str, port: int, path: str, key: str, body: bytes) -> None:
        self.host, self.port = host, port
        self.request = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        status = await self.reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"unexpected status {status!r}")
        length = -1
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length < 0:
            raise RuntimeError("expected a Content-Length response")
        await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
            self.writer = None


async def _block(url: str, key: str, body: bytes, concurrency: int, seconds: float) -> tuple[int, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path.rstrip("/") or "") + "/v1/chat/completions"
    done = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors
        client = _Client(host, port, path, key, body)
        try:
            while time.perf_counter() < deadline:
                try:
                    await client.post()
                    done += 1
                except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError):
                    errors += 1
                    await client.close()
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


def main(argv: list[str]) -> None:
    """Print the req/s table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks gateway_throughput --")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=2.0, help="length of one block")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--gateway-workers", type=int, nargs="+", default=[1], help="gateway process counts")
    p.add_argument(
        "--server-workers",
        type=int,
        nargs="*",
        default=[],
        help="also the reference server, `serve --gateway-workers N`, for each N (store auth, usage metered)",
    )
    p.add_argument("--target", action="append", default=[], metavar="NAME=URL", help="another proxy")
    p.add_argument("--target-key", default=API_KEY, help="API key sent to --target proxies")
    args = p.parse_args(argv)
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    ).encode()
    engine, engine_port = _start([sys.executable, "-m", "gpustack_core.gateway.fake_engine", "--port", "0"])
    print(f"# engine for --target proxies: http://127.0.0.1:{engine_port}/v1 (model {MODEL})", flush=True)
    serve = [sys.executable, "-m", "benchmarks.proxy", "--serve-gateway", f"http://127.0.0.1:{engine_port}"]
    processes = [engine]
    servers: list[ServerTarget] = []
    targets: dict[str, tuple[str, str, list[int]]] = {
        "direct (engine)": (f"http://127.0.0.1:{engine_port}", API_KEY, [engine.pid])
    }
    try:
        for count in args.gateway_workers:
            first, port = _start([*serve, "0", ""])
            group = [first] + [_start([*serve, str(port), ""])[0] for _ in range(count - 1)]
            processes += group
            targets[f"gateway, {count} process(es)"] = (
                f"http://127.0.0.1:{port}",
                API_KEY,
                [proc.pid for proc in group],
            )
        for count in args.server_workers:
            server = ServerTarget(count, engine_port, engine.pid, MODEL)
            servers.append(server)
            targets[f"server, --gateway-workers {count}"] = (server.url, server.key, server.pids)
        for spec in args.target:
            name, _, url = spec.partition("=")
            targets[name] = (url, args.target_key, [])
        time.sleep(0.5)
        rates: dict[str, list[float]] = {name: [] for name in targets}
        ratios: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
        served: dict[str, int] = dict.fromkeys(targets, 0)
        failed: dict[str, int] = dict.fromkeys(targets, 0)
        for url, key, _ in targets.values():
            asyncio.run(_block(url, key, body, args.concurrency, 0.3))  # warm-up
        loads = []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            this_round: dict[str, float] = {}
            for name, (url, key, pids) in targets.items():
                cpu0 = sum(_cpu_seconds(pid) for pid in pids)
                started = time.perf_counter()
                done, errors = asyncio.run(_block(url, key, body, args.concurrency, args.seconds))
                this_round[name] = done / (time.perf_counter() - started)
                cpu[name] += sum(_cpu_seconds(pid) for pid in pids) - cpu0
                served[name] += done
                failed[name] += errors
            for name, rate in this_round.items():
                rates[name].append(rate)
                ratios[name].append(rate / this_round["direct (engine)"])
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(
            f"# {now}, {platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{min(loads):.1f}-{max(loads):.1f}, Python {platform.python_version()}; tiny non-streamed "
            f"chat completions, concurrency {args.concurrency}, {args.rounds} rounds of {args.seconds} s"
        )
        print("| target | req/s (median) | x direct (median of rounds) | CPU ms/req | errors |")
        print("|---|---:|---:|---:|---:|")
        for name in targets:
            per_req = f"{cpu[name] * 1000 / served[name]:.3f}" if targets[name][2] and served[name] else "-"
            print(
                f"| {name} | {statistics.median(rates[name]):.0f} | {statistics.median(ratios[name]):.2f} "
                f"| {per_req} | {failed[name]} |"
            )
    finally:
        for server in servers:
            server.close()
        for proc in processes:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
