"""Requests per second of tiny non-streamed completions: straight to the engine vs through proxies.

``python -m benchmarks gateway_throughput [-- --concurrency 64 --seconds 2 --rounds 4
--gateway-workers 1 2 --server-workers 1 2 --target litellm=http://127.0.0.1:4000]``

Processes as deployed: the fake engine (one uvicorn process), the gateway (``benchmarks.proxy``'s
``--serve-gateway``, uvicorn, one route; ``--gateway-workers N`` runs N processes on one port with
``SO_REUSEPORT``), with ``--server-workers N`` the reference server itself (``gpustack-core serve
--gateway-workers N``: store-backed keys, usage metered into its database, see
``benchmarks._server_target``; ``--baseline-src DIR`` adds each run from another commit's sources),
and this process as the load generator (asyncio, keep-alive HTTP/1.1, reads
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
from dataclasses import dataclass
from urllib.parse import urlsplit

from benchmarks._server_target import ServerTarget
from benchmarks.proxy import API_KEY, MODEL, _cpu_seconds, _listener_pids, _parse_target, _start

__all__ = ["Throughput", "compare", "main", "print_table"]


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


def tiny_body(engine_ms: float = 0.0) -> bytes:
    """A tiny non-streamed chat completion that the fake engine answers after ``engine_ms``.

    One token: the fake engine's default of 8 tokens 10 ms apart made every answer wait 80 ms,
    which capped 64 connections at 800 req/s whatever the proxy cost (the results before
    2026-12-03 06:30 UTC measured that; ``--engine-ms 80`` reproduces it).
    """
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
            "fake_tokens": 1,
            "fake_delay_s": engine_ms / 1000,
        }
    ).encode()


DIRECT = "direct (engine)"


@dataclass
class Throughput:
    """Per target: req/s and ratio to the first target in each round, CPU seconds, requests, errors."""

    rates: dict[str, list[float]]
    ratios: dict[str, list[float]]
    cpu: dict[str, float]
    served: dict[str, int]
    failed: dict[str, int]
    measured: dict[str, bool]  # whether CPU was counted (the target's processes are known)
    loads: list[float]

    def load_text(self) -> str:
        return f"{min(self.loads):.1f}-{max(self.loads):.1f}"


def compare(
    targets: dict[str, tuple[str, str, list[int]]],
    concurrency: int,
    seconds: float,
    rounds: int,
    engine_ms: float = 0.0,
) -> Throughput:
    """Blocks of ``seconds`` of tiny requests to each target (name: (base URL, key, pids)) in turn,
    ``rounds`` times; the first target is the reference of the ratios."""
    body = tiny_body(engine_ms)
    names = list(targets)
    result = Throughput(
        rates={n: [] for n in names},
        ratios={n: [] for n in names},
        cpu=dict.fromkeys(names, 0.0),
        served=dict.fromkeys(names, 0),
        failed=dict.fromkeys(names, 0),
        measured={n: bool(targets[n][2]) for n in names},
        loads=[],
    )
    for url, key, _ in targets.values():
        asyncio.run(_block(url, key, body, concurrency, 0.3))  # warm-up
    for _ in range(rounds):
        result.loads.append(os.getloadavg()[0])
        this_round: dict[str, float] = {}
        for name, (url, key, pids) in targets.items():
            cpu0 = sum(_cpu_seconds(pid) for pid in pids)
            started = time.perf_counter()
            done, errors = asyncio.run(_block(url, key, body, concurrency, seconds))
            this_round[name] = done / (time.perf_counter() - started)
            result.cpu[name] += sum(_cpu_seconds(pid) for pid in pids) - cpu0
            result.served[name] += done
            result.failed[name] += errors
        for name, rate in this_round.items():
            result.rates[name].append(rate)
            result.ratios[name].append(rate / this_round[names[0]])
    return result


def print_table(result: Throughput) -> None:
    """The req/s table in Markdown."""
    print("| target | req/s (median) | x direct (median of rounds) | CPU ms/req | errors |")
    print("|---|---:|---:|---:|---:|")
    for name in result.rates:
        served = result.served[name]
        per_req = f"{result.cpu[name] * 1000 / served:.3f}" if result.measured[name] and served else "-"
        print(
            f"| {name} | {statistics.median(result.rates[name]):.0f} "
            f"| {statistics.median(result.ratios[name]):.2f} | {per_req} | {result.failed[name]} |",
            flush=True,
        )


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
    p.add_argument(
        "--baseline-src",
        default=None,
        metavar="DIR",
        help="with --server-workers: also each server run from this src directory (another commit's "
        "`git archive COMMIT src`), as `server (baseline), --gateway-workers N`",
    )
    p.add_argument("--target", action="append", default=[], metavar="NAME=URL", help="another proxy")
    p.add_argument("--target-key", default=API_KEY, help="API key sent to --target proxies")
    p.add_argument("--engine-port", type=int, default=0, help="the fake engine's port (for --target proxies)")
    p.add_argument("--engine-ms", type=float, default=0.0, help="the fake engine's time to answer a request")
    args = p.parse_args(argv)
    engine, engine_port = _start(
        [sys.executable, "-m", "gpustack_core.gateway.fake_engine", "--port", str(args.engine_port)]
    )
    print(f"# engine for --target proxies: http://127.0.0.1:{engine_port}/v1 (model {MODEL})", flush=True)
    serve = [sys.executable, "-m", "benchmarks.proxy", "--serve-gateway", f"http://127.0.0.1:{engine_port}"]
    processes = [engine]
    servers: list[ServerTarget] = []
    targets: dict[str, tuple[str, str, list[int]]] = {
        DIRECT: (f"http://127.0.0.1:{engine_port}", API_KEY, [engine.pid])
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
            if args.baseline_src is not None:
                baseline = ServerTarget(count, engine_port, engine.pid, MODEL, source=args.baseline_src)
                servers.append(baseline)
                targets[f"server (baseline), --gateway-workers {count}"] = (
                    baseline.url,
                    baseline.key,
                    baseline.pids,
                )
            server = ServerTarget(count, engine_port, engine.pid, MODEL)
            servers.append(server)
            targets[f"server, --gateway-workers {count}"] = (server.url, server.key, server.pids)
        for spec in args.target:
            name, url, key = _parse_target(spec, args.target_key)
            targets[name] = (url, key, _listener_pids(urlsplit(url).port or 80))
        time.sleep(0.5)
        result = compare(targets, args.concurrency, args.seconds, args.rounds, args.engine_ms)
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(
            f"# {now}, {platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{result.load_text()}, Python {platform.python_version()}; tiny non-streamed "
            f"chat completions answered after {args.engine_ms:g} ms, concurrency {args.concurrency}, "
            f"{args.rounds} rounds of {args.seconds} s"
        )
        print_table(result)
    finally:
        for server in servers:
            server.close()
        for proc in processes:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
