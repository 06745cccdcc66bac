"""Downloads over loopback: ``ModelCache.ensure_files`` beside curl and ``hf_hub_download``.

``python -m benchmarks downloads [-- --size-mib 256 --rounds 3]``. A file server in its own
process (``benchmarks/_file_server.py``, ``os.sendfile``, speaks the Hub's resolve headers)
serves one random file; each round runs every client once (``curl -o FILE`` first, the others in
an order rotated by one place per round) into a fresh directory on the same filesystem. Rows give
the median seconds, MiB/s and the ratio to ``curl -o FILE`` of the same round (the machine is
shared: ratios, not absolute numbers). ``ensure_files`` rows share one ``httpx.Client`` made
before the rounds, as a worker keeps one.
"default" is ``ModelCache()``'s own choice (one connection, split into 4 when it waits on the
network); "always split" forces the split; "h11 body" rows read every body byte through h11 (1 MiB
reads), as before the direct socket reads, for the difference in the same rounds.
``--per-connection-mib N`` paces each server connection to N MiB/s, as a remote hub would.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gpustack_core.models import _transfer
from gpustack_core.models.cache import FileRequest, ModelCache

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _start_server(path: Path, rate_mib: float | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks._file_server",
            str(path),
            *([] if rate_mib is None else [str(rate_mib)]),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port:
        raise RuntimeError("benchmark file server did not start")
    return proc, f"http://127.0.0.1:{port}"


def _clients(
    base: str, size: int, digest: str, client: httpx.Client, decisions: list[bool]
) -> dict[str, Callable[[Path], None]]:
    url = f"{base}/org/m/resolve/{COMMIT}/m.bin"

    def curl_file(out: Path) -> None:
        subprocess.run(["curl", "-sSf", "-o", str(out / "m.bin"), url], check=True)

    def curl_null(out: Path) -> None:
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", url], check=True)

    def hub(out: Path) -> None:
        from huggingface_hub import hf_hub_download

        hf_hub_download("org/m", "m.bin", revision=COMMIT, cache_dir=str(out), endpoint=base)

    def cache(connections: int, split: bool | None = None, h11: bool = False) -> Callable[[Path], None]:
        def run(out: Path) -> None:
            request = FileRequest(path="m.bin", url=url, size_bytes=size, sha256=digest)

            def policy(sample: _transfer.StreamSample) -> bool:
                if split is not None:
                    return split
                decided = _transfer.network_bound(sample)
                decisions.append(decided)
                return decided

            # h11: every body byte through h11 in 1 MiB reads, as before 2026-12-03 10:00 UTC
            saved = _transfer._body_socket
            if h11:
                _transfer._body_socket = lambda response, read_bytes: None
            try:
                ModelCache(out, connections=connections, split=policy).ensure_files(
                    "huggingface", "org/m", COMMIT, [request], client=client
                )
            finally:
                _transfer._body_socket = saved

        return run

    return {
        "curl -o FILE (no fsync, no hash)": curl_file,
        "curl -o /dev/null": curl_null,
        "huggingface_hub.hf_hub_download": hub,
        "ensure_files, default (4, split if waiting)": cache(4),
        "ensure_files, 1 connection": cache(1),
        "ensure_files, 4 connections, always split": cache(4, split=True),
        "ensure_files, 8 connections, always split": cache(8, split=True),
        "ensure_files, 1 connection, h11 body": cache(1, h11=True),
        "ensure_files, 4 always split, h11 body": cache(4, split=True, h11=True),
    }


def main(argv: list[str]) -> None:
    """Print the download table (median of rounds, ratio to curl into a file)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks downloads")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=".", help="where the files are written (its filesystem matters)")
    parser.add_argument(
        "--per-connection-mib", type=float, default=None, help="pace each connection, as a remote hub's limit"
    )
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for this benchmark (apt-get install curl)")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-downloads-") as tmp:
        source = Path(tmp) / "source.bin"
        with open(source, "wb") as handle:
            for _ in range(args.size_mib):
                handle.write(os.urandom(1 << 20))
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        size = source.stat().st_size
        server, base = _start_server(source, args.per_connection_mib)
        try:
            # one client for every round, as a worker keeps one (making it loads the CA bundle: 0.05-0.25 s
            # here); hf_hub_download keeps its own session across calls the same way
            client = httpx.Client()
            decisions: list[bool] = []  # the default policy's, one per round
            clients = _clients(base, size, digest, client, decisions)
            seconds: dict[str, list[float]] = {name: [] for name in clients}
            ratios: dict[str, list[float]] = {name: [] for name in clients}
            loads = []
            for round_index in range(args.rounds):
                loads.append(os.getloadavg()[0])
                this_round: dict[str, float] = {}
                # curl -o FILE first, the others rotated a place per round: no row always follows another
                names = list(clients)
                rest = names[1:]
                shift = round_index % len(rest)
                for name in [names[0], *rest[shift:], *rest[:shift]]:
                    run = clients[name]
                    out = Path(tmp) / f"out-{round_index}"
                    out.mkdir()
                    started = time.perf_counter()
                    run(out)
                    this_round[name] = time.perf_counter() - started
                    shutil.rmtree(out)
                for name, value in this_round.items():
                    seconds[name].append(value)
                    ratios[name].append(this_round["curl -o FILE (no fsync, no hash)"] / value)
            client.close()
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=10)
    print(
        f"\nDownload of one {args.size_mib} MiB file over loopback, {args.rounds} rounds, "
        f"{'' if args.per_connection_mib is None else f'{args.per_connection_mib:g} MiB/s per connection, '}"
        f"load average at round starts {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} CPUs"
    )
    print(f"| {'what':<42} | {'median s':>8} | {'MiB/s':>7} | {'x curl -o FILE (per round)':>30} |")
    print(f"|{'-' * 44}|{'-' * 9}:|{'-' * 8}:|{'-' * 31}:|")
    for name in clients:
        median = statistics.median(seconds[name])
        per_round = " / ".join(f"{r:.2f}" for r in ratios[name])
        print(f"| {name:<42} | {median:>8.3f} | {args.size_mib / median:>7.0f} | {per_round:>30} |")
    print(f"default: split into ranges in {sum(decisions)} of {len(decisions)} rounds")
