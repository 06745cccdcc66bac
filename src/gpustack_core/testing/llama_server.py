"""Run a real ``llama-server`` on a model and measure its memory (Linux).

Used by the estimation accuracy benchmark and the slow estimation test. Two measurements:
the buffer sizes llama.cpp logs while loading (model, KV cache, compute, output buffers),
and the process's resident memory (``VmRSS``, and its peak ``VmHWM``) read from ``/proc``
once the server answers ``/health`` and has completed one request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gpustack_core.worker.runner import free_port

__all__ = [
    "BufferLine",
    "LlamaServerMeasurement",
    "find_llama_server",
    "measure_llama_server",
    "parse_buffer_lines",
    "parse_buffer_sizes",
]

_BUFFER_RE = re.compile(
    r"(?:(?P<func>\w+):\s+)?(?P<where>\S+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*"
    r"(?P<mib>[\d.]+) MiB"
)
_MIB = 2**20


def find_llama_server(explicit: str | None = None) -> str | None:
    """The llama-server binary: ``explicit``, ``$GPUSTACK_LLAMA_SERVER``, or ``llama-server`` on PATH."""
    for candidate in (explicit, os.environ.get("GPUSTACK_LLAMA_SERVER")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("llama-server")


@dataclass(frozen=True)
class BufferLine:
    """One buffer-size line of a llama.cpp log.

    ``function`` is the logging function (``load_tensors``, ``llama_kv_cache``,
    ``sched_reserve``, ...; empty when the line has none), ``where`` the backend buffer type
    (``CUDA0``, ``CUDA_Host``, ``CPU_Mapped``, ...), ``kind`` one of ``model``, ``KV``,
    ``compute``, ``output``, ``RS``; ``bytes`` from the logged MiB with two decimals.
    """

    function: str
    where: str
    kind: str
    bytes: int


def parse_buffer_lines(log: str) -> list[BufferLine]:
    """Every buffer-size line of a llama.cpp log, in order."""
    return [
        BufferLine(
            function=m.group("func") or "",
            where=m.group("where"),
            kind=m.group("kind"),
            bytes=round(float(m.group("mib")) * _MIB),
        )
        for m in _BUFFER_RE.finditer(log)
    ]


def parse_buffer_sizes(log: str) -> dict[str, int]:
    """Sum llama.cpp's logged buffer sizes by kind: ``model``, ``KV``, ``compute``, ``output``.

    Lines look like ``load_tensors:   CPU_Mapped model buffer size =    14.56 MiB`` and
    ``sched_reserve:        CPU compute buffer size =    52.51 MiB``. When the compute buffer is
    reserved more than once, the last reservation counts. Values are bytes (from 2-decimal MiB).
    """
    sizes: dict[str, int] = {}
    compute: dict[str, int] = {}
    for line in parse_buffer_lines(log):
        if line.kind == "compute":
            compute[line.where] = line.bytes
        else:
            sizes[line.kind] = sizes.get(line.kind, 0) + line.bytes
    if compute:
        sizes["compute"] = sum(compute.values())
    return sizes


@dataclass(frozen=True)
class LlamaServerMeasurement:
    """What one llama-server run used."""

    buffers: dict[str, int]
    rss_bytes: int
    peak_rss_bytes: int
    log: str = field(repr=False)


def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def measure_llama_server(
    binary: str,
    model: str | os.PathLike[str],
    args: Sequence[str] = (),
    *,
    prompt_tokens: int = 64,
    timeout_s: float = 120.0,
) -> LlamaServerMeasurement:
    """Start ``binary -m model ARGS`` on a free loopback port, wait, measure, stop it.

    After ``/health`` answers, one ``/completion`` request with ``prompt_tokens`` prompt tokens
    (token ids) runs, so pages of the weights, KV cache and compute buffer have been touched.

    Raises:
        RuntimeError: the server exited, did not become ready within ``timeout_s`` or refused the
            request (with the tail of its log or its answer).
    """
    port = free_port()
    cmd = [binary, "-m", os.fspath(model), "--host", "127.0.0.1", "--port", str(port), *args]
    with tempfile.TemporaryFile(mode="w+") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout_s
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(timeout=10.0) as client:
                while True:
                    if proc.poll() is not None:
                        log_file.seek(0)
                        raise RuntimeError(
                            f"llama-server exited with {proc.returncode}:\n{log_file.read()[-3000:]}"
                        )
                    if time.monotonic() > deadline:
                        log_file.seek(0)
                        raise RuntimeError(
                            f"llama-server not ready after {timeout_s} s:\n{log_file.read()[-3000:]}"
                        )
                    try:
                        if client.get(f"{base}/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                # token ids, so the prompt has exactly prompt_tokens tokens (id 100: a byte token)
                prompt = [100] * max(prompt_tokens, 1)
                reply = client.post(
                    f"{base}/completion",
                    json={"prompt": prompt, "n_predict": 4, "cache_prompt": False},
                    timeout=timeout_s,
                )
                if reply.status_code != 200:
                    raise RuntimeError(f"llama-server answered {reply.status_code}: {reply.text[:500]}")
            status = _proc_status(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_file.seek(0)
        log = log_file.read()
    return LlamaServerMeasurement(
        buffers=parse_buffer_sizes(log),
        rss_bytes=status.get("VmRSS", 0),
        peak_rss_bytes=status.get("VmHWM", 0),
        log=log,
    )
