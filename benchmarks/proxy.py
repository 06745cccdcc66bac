"""Added latency of the gateway: streamed chat completions through the gateway vs straight to the engine.

Three processes, as deployed: a fake OpenAI-compatible engine (uvicorn), the gateway (uvicorn,
``create_gateway`` with one route), and this process as the load generator. The load generator
is a minimal asyncio HTTP/1.1 client (keep-alive, chunked decoding) so that it costs little CPU
and measures the same way on both paths. For each concurrency it alternates blocks of requests
sent directly to the engine and through the gateway, so both see the same machine load.

Per request it measures the first-byte time (request written -> first body byte) and the total
time (-> last byte). "Added" is the gateway's percentile minus the direct percentile.

``python -m benchmarks proxy -- --requests 400 --concurrency 1 16 64``

Other proxies in the same run: ``--aiohttp`` adds the same gateway forwarding through aiohttp's
client instead of its own pool (``benchmarks._aiohttp_upstreams``); ``--target NAME=URL`` adds any
OpenAI-compatible proxy already running (LiteLLM, say), configured with the fake engine at
``--engine-port`` as model ``bench-model``. ``--burst C`` adds synchronized rows after staggered
ones, and ``--throughput C`` ends with the req/s of tiny non-streamed requests at concurrency C
(``benchmarks.gateway_throughput``), so one run gives every table of docs/benchmarks/proxy.md.
``--server-workers N`` adds the reference server itself, ``gpustack-core serve --gateway-workers N``
on its own database (``benchmarks._server_target``), as the target ``server, --gateway-workers N``.
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
from urllib.parse import urlsplit

from benchmarks._server_target import ServerTarget

__all__ = ["main", "serve_gateway"]

API_KEY = "sk-bench"
MODEL = "bench-model"
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- the gateway process -----------------------------------------------------------------------------


def serve_gateway(
    upstream: str, port: int = 0, store_url: str | None = None, limits: bool = False, client: str = "ours"
) -> None:
    """Run the gateway under uvicorn in this process, one route to ``upstream``; print the port.

    The socket is bound with ``SO_REUSEPORT``: several such processes on one port share the
    incoming connections (the kernel spreads them), which is how ``--gateway-workers`` runs.
    With ``store_url`` the keys and usage go through the reference server's database-backed
    authenticator and usage sink (``--store-backed``), as ``gpustack-core serve`` runs them;
    ``limits`` adds the server's database-backed quota and rate limiter (``--limits``).
    ``client="aiohttp"`` forwards through aiohttp's client instead of the gateway's own pool
    (``--aiohttp``, see ``benchmarks._aiohttp_upstreams``).
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
        app = gateway = create_gateway(routes, auth, DiscardingSink())
    else:
        app, gateway = _store_backed_app(routes, store_url, limits)
    if client == "aiohttp":
        from benchmarks._aiohttp_upstreams import install
        from gpustack_core.gateway import gateway_of

        install(gateway_of(gateway))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _store_backed_app(routes: Any, store_url: str, limits: bool = False) -> tuple[Any, Any]:
    """The gateway with the server's StoreKeyAuthenticator and batched StoreUsageSink (and with
    ``limits``, its StoreLimiter), mounted in an app that runs the sink: (app, gateway app)."""
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

    return Starlette(routes=[Mount("", app=gateway)], lifespan=lifespan), gateway


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
class Target:
    """Where one row's requests go: ``url`` is the base (``/v1/chat/completions`` is appended)."""

    name: str
    url: str
    key: str
    body: bytes
    pids: list[int]  # processes whose CPU time the row reports (none: not reported)

    @property
    def address(self) -> tuple[str, int, str]:
        parts = urlsplit(self.url)
        return (
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            parts.path.rstrip("/") + "/v1/chat/completions",
        )


@dataclass
class Sample:
    """One request's timings in seconds."""

    first_byte: float
    total: float


@dataclass
class Series:
    """All samples of one target at one concurrency, and the CPU its processes spent on them."""

    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0

    def pct(self, attr: str, q: float) -> float:
        values = sorted(getattr(s, attr) for s in self.samples)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / max(1, len(self.samples) + self.errors)


class Connection:
    """A keep-alive HTTP/1.1 connection that posts a JSON body and reads a chunked stream."""

    def __init__(self, target: Target) -> None:
        self.host, self.port, self.path = target.address
        self.key = target.key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_stream(self, body: bytes) -> Sample:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\nauthorization: Bearer {self.key}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
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
    target: Target, concurrency: int, count: int, series: Series | None, stagger_s: float = 0.0
) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        conn = Connection(target)
        if stagger_s:
            await asyncio.sleep(random.uniform(0, stagger_s))
        try:
            while remaining > 0:
                remaining -= 1
                try:
                    sample = await conn.post_stream(target.body)
                except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError):
                    if series is not None:
                        series.errors += 1
                    await conn.close()
                    conn = Connection(target)
                    continue
                if series is not None:
                    series.samples.append(sample)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _measure(
    targets: list[Target], concurrency: int, requests: int, rounds: int, stagger_s: float
) -> dict[str, Series]:
    """Blocks of requests to each target in turn, ``rounds`` times; CPU counted per block."""
    out = {t.name: Series() for t in targets}
    for target in targets:  # warm up connections and code paths
        await _block(target, concurrency, _warmup(concurrency), None)
    per_block = max(concurrency, requests // rounds)
    for _ in range(rounds):
        for target in targets:
            cpu0 = sum(_cpu_seconds(pid) for pid in target.pids)
            await _block(target, concurrency, per_block, out[target.name], stagger_s)
            out[target.name].cpu_s += sum(_cpu_seconds(pid) for pid in target.pids) - cpu0
    return out


def _warmup(concurrency: int) -> int:
    return max(concurrency * 2, 20)


def _ms(v: float) -> str:
    return f"{v * 1000:8.2f}"


def _listener_pids(port: int) -> list[int]:
    """The processes listening on ``port`` of this host (to count an external proxy's CPU); may be empty."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return []
    return sorted(
        {
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        }
    )


def _parse_target(spec: str, key: str) -> tuple[str, str, str]:
    name, sep, url = spec.partition("=")
    parts = urlsplit(url)
    if not sep or not name or parts.scheme != "http" or not parts.hostname:
        raise SystemExit(
            f"--target {spec!r}: expected NAME=http://HOST:PORT[/PREFIX] (an OpenAI-compatible proxy)"
        )
    return name, url.rstrip("/"), key


def main(argv: list[str]) -> None:
    """Run the benchmark and print a table (all times in milliseconds)."""
    if argv[:1] == ["--serve-gateway"]:
        flags = argv[4:]
        serve_gateway(
            argv[1],
            int(argv[2]),
            argv[3] or None,
            "limits" in flags,
            "aiohttp" if "aiohttp" in flags else "ours",
        )
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
        "--burst",
        type=int,
        nargs="*",
        default=[],
        metavar="C",
        help="after the --concurrency rows, synchronized rows at these concurrencies (with --stagger)",
    )
    p.add_argument(
        "--throughput",
        type=int,
        default=0,
        metavar="C",
        help="then tiny non-streamed requests at concurrency C: req/s of every target, rounds interleaved",
    )
    p.add_argument("--throughput-seconds", type=float, default=2.0, help="length of one --throughput block")
    p.add_argument(
        "--throughput-engine-ms",
        type=float,
        nargs="+",
        default=[0.0],
        metavar="MS",
        help="the fake engine's time to answer a --throughput request; one table per value",
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
    p.add_argument(
        "--aiohttp",
        action="store_true",
        help="also the same gateway forwarding through aiohttp's client (target gateway (aiohttp))",
    )
    p.add_argument("--no-inject", action="store_true", help="leave out the gateway+inject row")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another OpenAI-compatible proxy already running, configured with the engine of --engine-port",
    )
    p.add_argument("--target-key", default=API_KEY, help="API key sent to --target proxies")
    p.add_argument("--engine-port", type=int, default=0, help="the fake engine's port (for --target proxies)")
    p.add_argument(
        "--server-workers",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also the reference server, `serve --gateway-workers N`, for each N (store auth, usage "
        "metered; see benchmarks._server_target)",
    )
    args = p.parse_args(argv)
    externals = [_parse_target(spec, args.target_key) for spec in args.target]
    store_url, api_key = "", API_KEY
    tmp = tempfile.TemporaryDirectory()
    if args.store_backed or args.limits:
        store_url, api_key = _make_store(Path(tmp.name) / "bench.sqlite", args.database_url)

    engine, engine_port = _start(
        [sys.executable, "-m", "gpustack_core.gateway.fake_engine", "--port", str(args.engine_port)]
    )
    serve = [sys.executable, "-m", "benchmarks.proxy", "--serve-gateway", f"http://127.0.0.1:{engine_port}"]
    groups: dict[str, list[tuple[subprocess.Popen[str], int]]] = {}
    servers: list[ServerTarget] = []

    def start_group(name: str, *flags: str) -> None:
        first = _start([*serve, "0", store_url, *flags])
        groups[name] = [first] + [
            _start([*serve, str(first[1]), store_url, *flags]) for _ in range(args.gateway_workers - 1)
        ]

    try:
        start_group("gateway")
        if args.limits:
            start_group("gateway+limits", "limits")
        if args.aiohttp:
            start_group("gateway (aiohttp)", "aiohttp")
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

        def gateway_target(name: str, group: str, include_usage: bool = True) -> Target:
            port = groups[group][0][1]
            return Target(
                name,
                f"http://127.0.0.1:{port}",
                api_key,
                body(include_usage),
                [p.pid for p, _ in groups[group]],
            )

        targets = [Target("direct", f"http://127.0.0.1:{engine_port}", api_key, body(True), [engine.pid])]
        targets.append(gateway_target("gateway", "gateway"))
        if args.limits:  # limits on vs off, same store, same requests, blocks interleaved
            targets.append(gateway_target("gateway+limits", "gateway+limits"))
        elif not args.no_inject:
            targets.append(gateway_target("gateway+inject", "gateway", include_usage=False))
        if args.aiohttp:
            targets.append(gateway_target("gateway (aiohttp)", "gateway (aiohttp)"))
        for count in args.server_workers:
            server = ServerTarget(count, engine_port, engine.pid, MODEL)
            servers.append(server)
            targets.append(
                Target(f"server, --gateway-workers {count}", server.url, server.key, body(True), server.pids)
            )
        for name, url, key in externals:
            port = urlsplit(url).port or 80
            targets.append(Target(name, url, key, body(True), _listener_pids(port)))

        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(
            f"# {now}, {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
            f"Python {platform.python_version()}, {_loop_name()}, {args.gateway_workers} gateway process(es)"
            + (
                f", keys and usage in the server's {'SQLite' if not args.database_url else 'SQL'} store"
                if store_url
                else ""
            )
            + (", gateway+limits reserves a token quota, RPM and TPM per request" if args.limits else ""),
            flush=True,
        )
        print(f"# engine: http://127.0.0.1:{engine_port}/v1 (model {MODEL})")
        print(
            f"# streams of {args.tokens} chunks, {args.delay_ms} ms apart; {args.requests} requests per row; "
            "CPU ms/req: the target's own processes (direct: the engine), measured blocks only"
        )
        print(
            "| conc | starts | target | first byte p50 | p99 | total p50 | p99 | added p50 | added p99 "
            "| first byte added p50 | errors | CPU ms/req |"
        )
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        stream_duration_s = args.tokens * args.delay_ms / 1000
        rows = [(c, args.stagger) for c in args.concurrency] + [(c, False) for c in args.burst]
        for c, stagger in rows:
            res = asyncio.run(
                _measure(targets, c, args.requests, args.rounds, stream_duration_s if stagger else 0.0)
            )
            d = res["direct"]
            starts = "-" if c == 1 else "staggered" if stagger else "synchronized"
            for target in targets:
                s, added = res[target.name], target.name != "direct"
                cpu_text = f"{s.cpu_ms_per_request():.2f}" if target.pids else "-"
                print(
                    f"| {c} | {starts} | {target.name} | {_ms(s.pct('first_byte', 0.5))} "
                    f"| {_ms(s.pct('first_byte', 0.99))} | {_ms(s.pct('total', 0.5))} "
                    f"| {_ms(s.pct('total', 0.99))} "
                    f"| {_ms(s.pct('total', 0.5) - d.pct('total', 0.5)) if added else '':>8} "
                    f"| {_ms(s.pct('total', 0.99) - d.pct('total', 0.99)) if added else '':>8} "
                    f"| {_ms(s.pct('first_byte', 0.5) - d.pct('first_byte', 0.5)) if added else '':>8} "
                    f"| {s.errors} | {cpu_text} |",
                    flush=True,
                )
        if args.throughput:
            from benchmarks.gateway_throughput import compare, print_table

            tiny = {t.name: (t.url, t.key, t.pids) for t in targets if t.name != "gateway+inject"}
            for engine_ms in args.throughput_engine_ms:
                result = compare(tiny, args.throughput, args.throughput_seconds, args.rounds, engine_ms)
                print(
                    f"# tiny non-streamed chat completions answered after {engine_ms:g} ms, concurrency "
                    f"{args.throughput}, {args.rounds} rounds of {args.throughput_seconds} s, load average "
                    f"{result.load_text()}"
                )
                print_table(result)
        print(f"# done {time.strftime('%H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}")
    finally:
        for server in servers:
            server.close()
        for proc in [*(g for group in groups.values() for g, _ in group), engine]:
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
    """User + system CPU time of a process (Linux ``/proc``; NaN elsewhere)."""
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
