"""Model sources: GGUF header reads by range requests, and cache download throughput.

``python -m benchmarks sources [-- --size-mib N]``. Runs a fake Hugging Face Hub on 127.0.0.1
(tests/sources/fake_hubs.py) and the real huggingface_hub client; prints two tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import gguf
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "sources"))

from fake_hubs import COMMIT, HubServer, HubState, huggingface_app

from gpustack_core.models.api import resolve_model
from gpustack_core.models.cache import FileRequest, ModelCache
from gpustack_core.models.gguf_header import parse_gguf_header
from gpustack_core.plugins import PluginHost
from gpustack_core.types import SourceOptions


def _big_header_gguf(vocab: int, layers: int, pad_to: int) -> bytes:
    """A GGUF header shaped like a 7B model with a large vocabulary, tensor data zero-filled."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.gguf"
        writer = gguf.GGUFWriter(str(path), arch="qwen2")
        writer.add_block_count(layers)
        writer.add_embedding_length(3584)
        writer.add_token_list([f"token-{i:06d}" for i in range(vocab)])
        writer.add_token_scores([0.0] * vocab)
        writer.add_token_types([1] * vocab)
        writer.add_token_merges([f"a{i} b{i}" for i in range(vocab)])
        for layer in range(layers):
            for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_gate", "ffn_down"):
                writer.add_tensor_info(
                    f"blk.{layer}.{name}.weight",
                    [3584, 3584 // 256 * 144],  # byte shape of a Q4_K row of 3584 values
                    np.dtype(np.uint8),
                    3584 * 3584 // 256 * 144,
                    raw_dtype=gguf.GGMLQuantizationType.Q4_K,
                )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        header = path.read_bytes()
    return header + bytes(max(pad_to - len(header), 0))


def _header_table() -> None:
    print("\nGGUF header read through HTTP range requests (resolve, huggingface_hub + fake Hub)")
    print(f"{'vocab':>8} {'header MiB':>11} {'parse s':>8} {'requests':>9} ", end="")
    print(f"{'fetched MiB':>12} {'resolve s':>10}")
    for vocab in (32_000, 152_064):
        data = _big_header_gguf(vocab, 28, 64 << 20)
        started = time.perf_counter()
        header = parse_gguf_header(data)
        parse_s = time.perf_counter() - started
        state = HubState(repos={"org/big": {"big-Q4_K.gguf": data}})
        with HubServer(huggingface_app(state)) as server, tempfile.TemporaryDirectory() as cache:
            options = SourceOptions(cache_dir=cache, endpoint=server.url)
            started = time.perf_counter()
            resolve_model(PluginHost(), "huggingface:org/big", options)
            resolve_s = time.perf_counter() - started
        fetched = sum((g.end or 0) - g.start + 1 for g in state.gets)
        print(
            f"{vocab:>8} {header.header_bytes / 2**20:>11.2f} {parse_s:>8.3f} {len(state.gets):>9} "
            f"{fetched / 2**20:>12.2f} {resolve_s:>10.2f}"
        )


def _download_table(size_mib: int) -> None:
    print(f"\nDownload of one {size_mib} MiB file over loopback (fake Hub, uvicorn in-process)")
    print(f"{'what':<44} {'seconds':>8} {'MiB/s':>8}")
    data = np.random.default_rng(0).integers(0, 255, size_mib << 20, dtype=np.uint8).tobytes()
    state = HubState(repos={"org/m": {"m.bin": data}})
    with HubServer(huggingface_app(state)) as server, tempfile.TemporaryDirectory() as tmp:
        url = f"{server.url}/org/m/resolve/{COMMIT}/m.bin"
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        rows: list[tuple[str, float]] = []
        with httpx.Client() as client:
            started = time.perf_counter()
            with client.stream("GET", url) as response:
                for _ in response.iter_bytes():
                    pass
            rows.append(("raw httpx stream to nowhere", time.perf_counter() - started))
            cache = ModelCache(tmp)
            request = FileRequest(path="m.bin", url=url, size_bytes=len(data), sha256=digest)
            started = time.perf_counter()
            cache.ensure_files("huggingface", "org/m", COMMIT, [request], client=client)
            rows.append(("ModelCache.ensure_files (write+fsync+sha256)", time.perf_counter() - started))
            started = time.perf_counter()
            cache.ensure_files("huggingface", "org/m", COMMIT, [request], client=client)
            rows.append(("ensure_files again (cached, manifest hit)", time.perf_counter() - started))
        for what, seconds in rows:
            rate = size_mib / seconds if "again" not in what else float("nan")
            print(f"{what:<44} {seconds:>8.3f} {rate:>8.1f}")


def main(argv: list[str]) -> None:
    """Print the header-read and download tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks sources")
    parser.add_argument("--size-mib", type=int, default=256, help="size of the downloaded file")
    args = parser.parse_args(argv)
    _header_table()
    _download_table(args.size_mib)
