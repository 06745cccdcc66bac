"""Added latency of the gateway: streamed chat completions through the gateway vs straight to the engine.

Three processes, as deployed: a fake OpenAI-compatible engine (uvicorn), the gateway (uvicorn,
``create_gateway`` with one route), and this process as the load generator. The load generator
is a minimal asyncio HTTP/1.1 client (keep-alive, chunked decoding) so that it costs little CPU
and measures the same way on both paths. For each concurrency it alternates blocks of requests
sent directly to the engine and through the gateway, so both see the same machine load.

Per request it measures the first-byte time (request written -> first body byte) and the total
time (-> last byte). "Added" is the gateway's percentile minus the direct percentile.

``python -m benchmarks proxy -- --requests 400 --concurrency 1 16 64``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main", "serve_gateway"]

API_KEY = "sk-bench"
MODEL = "bench-model"
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- the gateway process -----------------------------------------------------------------------------


def serve_gateway(upstream: str, port: int = 0, store_url: str | None = None, limits: bool = False) -> None:
    """Run the gateway under uvicorn in this process, one route to ``upstream``; print the port.

    The socket is bound with ``SO_REUSEPORT``: several such processes on one port share the
    incoming connections (the kernel spreads them), which is how ``--gateway-workers`` runs.
    With ``store_url`` the keys and usage go through the reference server's database-backed
    authenticator and usage sink (``--store-backed``), as ``gpustack-core serve`` runs them;
    ``limits`` adds the server's database-backed quota and rate limiter (``--limits``).
    """
    import uvicorn

    from gpustack_core.gateway import (
        InMemoryUsageSink,
        ModelEntry,
        Principal,
        StaticKeyAuthenticator,
        StaticRouteTable,
        Upstream,
        create_gateway,
    )

    routes = StaticRouteTable([ModelEntry(MODEL, "bench", 0, "llm")])
    routes.set_instance(MODEL, Upstream("i0", upstream, MODEL, MODEL))

    class DiscardingSink(InMemoryUsageSink):
        """Counts records without keeping them (a long benchmark must not grow memory)."""

        async def record(self, usage: object) -> None:
            self.count = getattr(self, "count", 0) + 1

    app: Any
    if store_url is None:
        auth = StaticKeyAuthenticator({API_KEY: Principal("u", "k", frozenset({"inference"}), None, False)})
        app = create_gateway(routes, auth, DiscardingSink())
    else:
        app = _store_backed_app(routes, store_url, limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _store_backed_app(routes: Any, store_url: str, limits: bool = False) -> Any:
    """The gateway with the server's StoreKeyAuthenticator and batched StoreUsageSink (and with
    ``limits``, its StoreLimiter)."""
    import contextlib

    import anyio
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from gpustack_core.gateway import create_gateway, gateway_lifespan
    from gpustack_core.server.gateway_bridge import StoreKeyAuthenticator, StoreUsageSink
    from gpustack_core.server.limiter import StoreLimiter
    from gpustack_core.server.store import Store
    from gpustack_core.server.store.database import make_engine
    from gpustack_core.server.store.governance import GovernanceStore

    store = Store(make_engine(store_url))
    auth, usage = StoreKeyAuthenticator(), StoreUsageSink()
    auth.store = usage.store = store
    limiter = None
    if limits:
        limiter = StoreLimiter()
        limiter.store = GovernanceStore(store.engine)
    gateway = create_gateway(routes, auth, usage, limiter=limiter)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        async with gateway_lifespan(gateway), anyio.create_task_group() as group:
            group.start_soon(usage.run)
            yield
            group.cancel_scope.cancel()
        await usage.flush()

    return Starlette(routes=[Mount("", app=gateway)], lifespan=lifespan)


def _make_store(path: Path, database_url: str | None = None) -> tuple[str, str]:
    """A fresh database (SQLite at ``path`` unless ``database_url``) with one user and an inference
    key: (URL, key). The key gets a daily token quota, an RPM and a TPM limit, all far from reached,
    so that ``--limits`` measures their bookkeeping, not refusals."""
    from gpustack_core.server.security import hash_secret, new_api_key
    from gpustack_core.server.store import Store, migrate
    from gpustack_core.server.store.database import make_engine
    from gpustack_core.server.store.governance import GovernanceStore

    url = database_url or f"sqlite:///{path}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    store = Store(engine)
    user = store.create_user(f"bench-{new_api_key()[0][:8]}", "unused", "user")
    key_id, token = new_api_key()
    store.create_key(key_id, user.id, "bench", "key", hash_secret(token), ["inference"], None, None)
    gov = GovernanceStore(engine)
    gov.set_limit("key", key_id, "", "tokens", "day", 10**12)
    gov.set_limit("key", key_id, "", "requests", "minute", 10**9)
    gov.set_limit("user", user.id, "", "tokens", "minute", 10**12)
    engine.dispose()
    return url, token


def _start(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise RuntimeError(f"{argv} did not start: {line!r}")
    return proc, int(line.split()[1])


# -- the load generator ------------------------------------------------------------------------------


@dataclass
class Sample:
    """One request's timings in seconds."""

    first_byte: float
    total: float


@dataclass
class Series:
    """All samples of one target at one concurrency."""

    samples: list[Sample] = field(default_factory=list)
    errors: int = 0

    def pct(self, attr: str, q: float) -> float:
        values = sorted(getattr(s, attr) for s in self.samples)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]


class Connection:
    """A keep-alive HTTP/1.1 connection that posts a JSON body and reads a chunked stream."""

    def __init__(self, port: int, key: str = API_KEY) -> None:
        self.port = port
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_stream(self, path: str, body: bytes) -> Sample:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {self.key}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        t0 = time.perf_counter()
        self.writer.write(head + body)
        status = await self.reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"unexpected status {status!r}")
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        if not chunked:
            raise RuntimeError("expected a chunked stream")
        first = 0.0
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                break
            await self.reader.readexactly(size + 2)
            if not first:
                first = time.perf_counter() - t0
        return Sample(first, time.perf_counter() - t0)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def _block(
    port: int,
    body: bytes,
    concurrency: int,
    count: int,
    series: Series | None,
    stagger_s: float = 0.0,
    key: str = API_KEY,
) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        conn = Connection(port, key)
        if stagger_s:
            await asyncio.sleep(random.uniform(0, stagger_s))
        try:
            while remaining > 0:
                remaining -= 1
                try:
                    sample = await conn.post_stream("/v1/chat/completions", body)
                except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError):
                    if series is not None:
                        series.errors += 1
                    await conn.close()
                    conn = Connection(port, key)
                    continue
                if series is not None:
                    series.samples.append(sample)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _measure(
    targets: dict[str, tuple[int, bytes]],
    concurrency: int,
    requests: int,
    rounds: int,
    stagger_s: float,
    key: str = API_KEY,
) -> dict[str, Series]:
    out = {name: Series() for name in targets}
    for port, body in targets.values():  # warm up connections and code paths
        await _block(port, body, concurrency, _warmup(concurrency), None, key=key)
    per_block = max(concurrency, requests // rounds)
    for _ in range(rounds):
        for name, (port, body) in targets.items():
            await _block(port, body, concurrency, per_block, out[name], stagger_s, key)
    return out


def _warmup(concurrency: int) -> int:
    return max(concurrency * 2, 20)


def _ms(v: float) -> str:
    return f"{v * 1000:8.2f}"


def main(argv: list[str]) -> None:
    """Run the benchmark and print a table (all times in milliseconds)."""
    if argv[:1] == ["--serve-gateway"]:
        serve_gateway(argv[1], int(argv[2]), argv[3] or None, argv[4:5] == ["limits"])
        return
    p = argparse.ArgumentParser(prog="python -m benchmarks proxy --")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--requests", type=int, default=400, help="requests per target and concurrency")
    p.add_argument("--rounds", type=int, default=4, help="alternating blocks per target")
    p.add_argument("--tokens", type=int, default=16, help="SSE chunks per stream")
    p.add_argument("--delay-ms", type=float, default=20.0, help="engine delay between chunks")
    p.add_argument(
        "--stagger",
        action="store_true",
        help="start each worker at a random time within one stream's duration (no synchronized bursts)",
    )
    p.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="gateway processes sharing the port (SO_REUSEPORT); the engine stays one process",
    )
    p.add_argument(
        "--store-backed",
        action="store_true",
        help="authenticate keys and meter usage through the reference server's SQLite store",
    )
    p.add_argument(
        "--limits",
        action="store_true",
        help="store-backed gateways with and without quotas and rate limits, side by side "
        "(targets gateway and gateway+limits; implies --store-backed)",
    )
    p.add_argument("--database-url", default=None, help="with --store-backed: this database, not SQLite")
    args = p.parse_args(argv)
    store_url, api_key = "", API_KEY
    tmp = tempfile.TemporaryDirectory()
    if args.store_backed or args.limits:
        store_url, api_key = _make_store(Path(tmp.name) / "bench.sqlite", args.database_url)

    engine, engine_port = _start([sys.executable, "-m", "gpustack_core.gateway.fake_engine", "--port", "0"])
    serve = [sys.executable, "-m", "benchmarks.proxy", "--serve-gateway", f"http://127.0.0.1:{engine_port}"]
    gateways = [_start([*serve, "0", store_url])]
    gateway_port = gateways[0][1]
    gateways += [_start([*serve, str(gateway_port), store_url]) for _ in range(args.gateway_workers - 1)]
    limited: list[tuple[subprocess.Popen[str], int]] = []
    if args.limits:
        limited = [_start([*serve, "0", store_url, "limits"])]
        limited += [
            _start([*serve, str(limited[0][1]), store_url, "limits"]) for _ in range(args.gateway_workers - 1)
        ]
    try:
        time.sleep(0.5)

        def body(include_usage: bool) -> bytes:
            obj: dict[str, object] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "benchmark the gateway please"}],
                "stream": True,
                "fake_tokens": args.tokens,
                "fake_delay_s": args.delay_ms / 1000,
            }
            if include_usage:
                obj["stream_options"] = {"include_usage": True}
            return json.dumps(obj).encode()

        targets = {
            "direct": (engine_port, body(True)),
            "gateway": (gateway_port, body(True)),
            "gateway+inject": (gateway_port, body(False)),
        }
        if args.limits:  # limits on vs off, same store, same requests, blocks interleaved
            targets = {
                "direct": (engine_port, body(True)),
                "gateway": (gateway_port, body(True)),
                "gateway+limits": (limited[0][1], body(True)),
            }
        loop_name = _loop_name()
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(
            f"# {now}, {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
            f"Python {platform.python_version()}, {loop_name}, {args.gateway_workers} gateway process(es)"
            + (
                f", keys and usage in the server's {'SQLite' if not args.database_url else 'SQL'} store"
                if store_url
                else ""
            )
            + (", gateway+limits reserves a token quota, RPM and TPM per request" if args.limits else "")
        )
        print(
            f"# streams of {args.tokens} chunks, {args.delay_ms} ms apart; {args.requests} requests per row"
        )
        print(
            "| conc | target | first byte p50 | p99 | total p50 | p99 | added p50 | added p99 "
            "| first byte added p50 | errors | gateway CPU ms/req |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in args.concurrency:
            groups = {"gateway": [p.pid for p, _ in gateways], "gateway+limits": [p.pid for p, _ in limited]}
            cpu0 = {g: sum(_cpu_seconds(pid) for pid in pids) for g, pids in groups.items()}
            stagger_s = args.tokens * args.delay_ms / 1000 if args.stagger else 0.0
            res = asyncio.run(_measure(targets, c, args.requests, args.rounds, stagger_s, api_key))
            cpu_ms: dict[str, float] = {}
            for g, pids in groups.items():  # CPU per request of each gateway process group
                served = sum(
                    len(s.samples) + s.errors + _warmup(c)
                    for n, s in res.items()
                    if n != "direct" and (n == "gateway+limits") == (g == "gateway+limits")
                )
                cpu_ms[g] = (sum(_cpu_seconds(pid) for pid in pids) - cpu0[g]) * 1000 / max(1, served)
            d = res["direct"]
            for name, s in res.items():
                added = name != "direct"
                group = "gateway+limits" if name == "gateway+limits" else "gateway"
                cpu_text = f"{cpu_ms[group]:.2f}" if added else ""
                print(
                    f"| {c} | {name} | {_ms(s.pct('first_byte', 0.5))} | {_ms(s.pct('first_byte', 0.99))} "
                    f"| {_ms(s.pct('total', 0.5))} | {_ms(s.pct('total', 0.99))} "
                    f"| {_ms(s.pct('total', 0.5) - d.pct('total', 0.5)) if added else '':>8} "
                    f"| {_ms(s.pct('total', 0.99) - d.pct('total', 0.99)) if added else '':>8} "
                    f"| {_ms(s.pct('first_byte', 0.5) - d.pct('first_byte', 0.5)) if added else '':>8} "
                    f"| {s.errors} | {cpu_text} |",
                    flush=True,
                )
    finally:
        for proc in [*(g for g, _ in [*gateways, *limited]), engine]:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        tmp.cleanup()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``; NaN elsewhere). Includes warm-up requests."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        parser = "httptools"
    except ImportError:
        parser = "h11"
    return f"uvicorn with {loop} + {parser}"


if __name__ == "__main__":
    main(sys.argv[1:])
