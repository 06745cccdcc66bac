"""llama.cpp runtimes side by side: a native build against the prebuilt ``xllamacpp`` runtime.

``python -m benchmarks llama_cpp_runtimes [-- --rounds 3 --threads 2 --tokens 64 --model medium]``

Both run on one generated GGUF (``--model``: a :class:`~gpustack_core.testing.gguf_models.TinyLlamaSpec`
preset, ``small`` ~6 M or ``medium`` ~58 M parameters, Q8_0) through the plugin's own launch spec,
with the same flags (``--threads``, context 2048, one slot), alternating which goes first in each
round. Each sample: seconds to ready, then a greedy completion (``ignore_eos``) of ``--tokens``
tokens after a warm-up, with llama.cpp's own ``timings`` (prompt and decode tokens/s). The native
build is the cached one (``gpustack-core engines install llama.cpp 0.3.36`` builds it); without
one, only the prebuilt runtime's rows are printed and the comparison is reported as not measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from gpustack_core.engines import default_engine_options
from gpustack_core.supervisor import RestartPolicy, Supervisor
from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import EngineInstallation, ModelCategory

__all__ = ["main"]

PROMPT = "Tell me a long story about a lighthouse keeper and the ships she guided home. " * 4


async def _sample(
    installation: EngineInstallation, model: Path, threads: int, tokens: int, work: Path
) -> dict[str, Any]:
    from gpustack_engine_llama_cpp import LlamaCppEngine

    extra = ("--threads", str(threads), "--threads-batch", str(threads), "--parallel", "1")
    request = EngineConformanceSuite().make_request(
        installation, ModelCategory.LLM, (str(model),), DeviceSetup.cpu(), extra=extra
    )
    request = request.model_copy(
        update={"deployment": request.deployment.model_copy(update={"context_length": 2048})}
    )
    spec = LlamaCppEngine().launch_spec(request)
    policy = RestartPolicy(max_restarts=0, health_interval_s=1.0)
    async with Supervisor(work / "state", work / "logs", policy) as supervisor:
        started = time.monotonic()
        await supervisor.start("bench", spec)
        await supervisor.wait_ready("bench", timeout_s=300)
        ready = time.monotonic() - started
        body = {
            "prompt": PROMPT,
            "n_predict": tokens,
            "temperature": 0,
            "ignore_eos": True,
            "cache_prompt": False,
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{spec.port}", timeout=600) as client:
            (await client.post("/completion", json={**body, "n_predict": 4})).raise_for_status()  # warm-up
            answer = await client.post("/completion", json=body)
            answer.raise_for_status()
            timings = answer.json()["timings"]
        await supervisor.stop("bench", grace_s=10)
    return {
        "ready_s": ready,
        "prompt_tps": timings["prompt_per_second"],
        "decode_tps": timings["predicted_per_second"],
        "decode_tokens": timings["predicted_n"],
    }


def main(argv: list[str]) -> None:
    """Measure and print one table (median of the rounds per runtime)."""
    from gpustack_engine_llama_cpp import cached_native_build, ensure_prebuilt

    parser = argparse.ArgumentParser(prog="python -m benchmarks llama_cpp_runtimes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", choices=("small", "medium"), default="medium")
    args = parser.parse_args(argv)
    options = default_engine_options()
    runtimes = {"prebuilt": ensure_prebuilt(options)}
    native = cached_native_build(options)
    if native is not None:
        runtimes["native"] = native
    with tempfile.TemporaryDirectory(prefix="llama-runtimes-") as tmp:
        work = Path(tmp)
        spec = TinyLlamaSpec.medium() if args.model == "medium" else TinyLlamaSpec.small("Q8_0")
        model = write_llama_gguf(work / f"{args.model}.gguf", spec)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in runtimes}
        for round_ in range(args.rounds):
            order = list(runtimes) if round_ % 2 == 0 else list(reversed(runtimes))
            for name in order:
                sample = anyio.run(
                    _sample, runtimes[name], model, args.threads, args.tokens, work / f"{name}-{round_}"
                )
                samples[name].append(sample)
        print(f"model: {args.model} ({model.stat().st_size / 2**20:.1f} MiB, Q8_0), {args.threads} threads, "
              f"{args.tokens} decoded tokens, median of {args.rounds} rounds")  # fmt: skip
        print("| runtime | version | ready (s) | prompt tokens/s | decode tokens/s | decode vs prebuilt |")
        print("|---|---|---|---|---|---|")
        base = statistics.median(s["decode_tps"] for s in samples["prebuilt"])
        for name, installation in runtimes.items():
            rows = samples[name]
            decode = statistics.median(s["decode_tps"] for s in rows)
            ready = statistics.median(s["ready_s"] for s in rows)
            prompt = statistics.median(s["prompt_tps"] for s in rows)
            print(
                f"| {name} | {installation.version} | {ready:.1f} | {prompt:.1f} | {decode:.1f} | "
                f"{decode / base:.2f}x |"
            )
        if native is None:
            print(
                "native: no native build installed (engines install llama.cpp 0.3.36 builds it); not measured"
            )
        print(json.dumps({name: rows for name, rows in samples.items()}))
