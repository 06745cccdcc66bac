"""Downloads over loopback: ``ModelCache.ensure_files`` beside curl and ``hf_hub_download``.

``python -m benchmarks downloads [-- --size-mib 256 --rounds 3]``. A file server in its own
process (``benchmarks/_file_server.py``, ``os.sendfile``, speaks the Hub's resolve headers)
serves one random file; each round runs every client once, in the same order, into a fresh
directory on the same filesystem. Rows give the median seconds, MiB/s and the ratio to
``curl -o FILE`` of the same round (the machine is shared: ratios, not absolute numbers). The
"64 KiB reads" rows run ``ensure_files`` without :func:`gpustack_core.models._transfer.widen_reads`
(httpcore's own read size), for the difference in the same rounds.
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


def _start_server(path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._file_server", str(path)],
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


def _clients(base: str, size: int, digest: str) -> dict[str, Callable[[Path], None]]:
    url = f"{base}/org/m/resolve/{COMMIT}/m.bin"

    def curl_file(out: Path) -> None:
        subprocess.run(["curl", "-sSf", "-o", str(out / "m.bin"), url], check=True)

    def curl_null(out: Path) -> None:
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", url], check=True)

    def hub(out: Path) -> None:
        from huggingface_hub import hf_hub_download

        hf_hub_download("org/m", "m.bin", revision=COMMIT, cache_dir=str(out), endpoint=base)

    def cache(connections: int, widen: bool = True) -> Callable[[Path], None]:
        def run(out: Path) -> None:
            request = FileRequest(path="m.bin", url=url, size_bytes=size, sha256=digest)
            # without widening: httpcore's 64 KiB reads, as before (the benchmark swaps the function)
            saved = _transfer.widen_reads
            if not widen:
                _transfer.widen_reads = lambda response, read_bytes=0: False
            try:
                with httpx.Client() as client:
                    ModelCache(out, connections=connections).ensure_files(
                        "huggingface", "org/m", COMMIT, [request], client=client
                    )
            finally:
                _transfer.widen_reads = saved

        return run

    return {
        "curl -o FILE (no fsync, no hash)": curl_file,
        "curl -o /dev/null": curl_null,
        "huggingface_hub.hf_hub_download": hub,
        "ensure_files, 1 connection": cache(1),
        "ensure_files, 4 connections": cache(4),
        "ensure_files, 8 connections": cache(8),
        "ensure_files, 1 connection, 64 KiB reads": cache(1, widen=False),
        "ensure_files, 4 connections, 64 KiB reads": cache(4, widen=False),
    }


def main(argv: list[str]) -> None:
    """Print the download table (median of rounds, ratio to curl into a file)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks downloads")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=".", help="where the files are written (its filesystem matters)")
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
        server, base = _start_server(source)
        try:
            clients = _clients(base, size, digest)
            seconds: dict[str, list[float]] = {name: [] for name in clients}
            ratios: dict[str, list[float]] = {name: [] for name in clients}
            loads = []
            for round_index in range(args.rounds):
                loads.append(os.getloadavg()[0])
                this_round: dict[str, float] = {}
                for name, run in clients.items():
                    out = Path(tmp) / f"out-{round_index}"
                    out.mkdir()
                    started = time.perf_counter()
                    run(out)
                    this_round[name] = time.perf_counter() - started
                    shutil.rmtree(out)
                for name, value in this_round.items():
                    seconds[name].append(value)
                    ratios[name].append(this_round["curl -o FILE (no fsync, no hash)"] / value)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=10)
    print(
        f"\nDownload of one {args.size_mib} MiB file over loopback, {args.rounds} rounds, "
        f"load average at round starts {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} CPUs"
    )
    print(f"| {'what':<42} | {'median s':>8} | {'MiB/s':>7} | {'x curl -o FILE (per round)':>30} |")
    print(f"|{'-' * 44}|{'-' * 9}:|{'-' * 8}:|{'-' * 31}:|")
    for name in clients:
        median = statistics.median(seconds[name])
        per_round = " / ".join(f"{r:.2f}" for r in ratios[name])
        print(f"| {name:<42} | {median:>8.3f} | {args.size_mib / median:>7.0f} | {per_round:>30} |")
