"""A real llama-server run on a generated model: the estimate is within 10% of what it allocates."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpustack_core.estimate import EstimateOptions, GGUFEstimator, read_gguf_file
from gpustack_core.testing.llama_server import find_llama_server, measure_llama_server
from gpustack_core.types import EngineInstallation

pytestmark = pytest.mark.slow


def test_estimate_within_ten_percent_of_llama_server(
    small_q8_gguf: Path, request: pytest.FixtureRequest
) -> None:
    # an explicit binary ($GPUSTACK_LLAMA_SERVER or PATH) wins; else the llama.cpp plugin's native build
    # (opt-in: the prebuilt runtime has no llama-server binary to measure)
    native: EngineInstallation | None = None
    if find_llama_server() is None:
        native = request.getfixturevalue("llama_cpp_native_installation")
    binary = find_llama_server() or (native.executable if native else "")
    options = EstimateOptions(ctx_size=4096, batch_size=2048, ubatch_size=512)
    est = GGUFEstimator(read_gguf_file(small_q8_gguf), options)
    args = [
        "-c",
        "4096",
        "-b",
        "2048",
        "-ub",
        "512",
        "-np",
        "1",
        "-t",
        "2",
        "-fa",
        "on",
        "-fit",
        "off",
        "-lv",
        "4",
    ]
    # fill the context: RSS counts the compute buffer's pages only once touched
    measured = measure_llama_server(binary, small_q8_gguf, args, prompt_tokens=4000, timeout_s=300)
    buffers = measured.buffers
    assert set(buffers) >= {"model", "KV", "compute"}, measured.log[-2000:]
    assert buffers["KV"] == pytest.approx(est.kv_total_bytes, rel=0.01)
    assert buffers["model"] == pytest.approx(read_gguf_file(small_q8_gguf).weight_bytes, rel=0.05)
    assert buffers["compute"] == pytest.approx(est.compute_bytes(), rel=0.10)
    total = est.cpu_only().host_memory_bytes
    assert measured.rss_bytes == pytest.approx(total, rel=0.10)
