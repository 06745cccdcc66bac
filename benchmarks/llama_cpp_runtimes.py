"""llama.cpp runtimes side by side: a native build against the prebuilt ``xllamacpp`` runtime.

``python -m benchmarks llama_cpp_runtimes [-- --rounds 3 --threads 2 --tokens 64 --model medium]``

Both run on one generated GGUF (``--model``, see :data:`MODELS`: ``small`` ~6 M, ``medium`` ~58 M,
``large`` ~250 M parameters, all Q8_0) through the plugin's own launch spec,
with the same flags (``--threads``, context 2048, one slot), alternating which goes first in each
round. Each sample: seconds to ready, then a greedy completion (``ignore_eos``) of ``--tokens``
tokens after a warm-up, with llama.cpp's own ``timings`` (prompt and decode tokens/s). The native
build is the cached one (``gpustack-core engines install llama.cpp 0.3.36`` builds it); without
one, only the prebuilt runtime's rows are printed and the comparison is reported as not measured.
"""

from __future__ import annotations

import argparse
import json
import os
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
from gpustack_core.testing.gguf_models import Fill, TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import EngineInstallation, ModelCategory, PerformancePreset

__all__ = ["MODELS", "main", "paired_ratios", "serve_and_measure", "write_model"]

PROMPT = "Tell me a long story about a lighthouse keeper and the ships she guided home. " * 4


#: Generated models the llama.cpp benchmarks serve, by name: (spec, how the weights are filled).
#: ``large`` (~250 M parameters, ~270 MiB as Q8_0) makes decoding bound by memory traffic as a real
#: model's is; its weights repeat one random chunk ("tiled"), which costs nothing in speed.
MODELS: dict[str, tuple[TinyLlamaSpec, Fill]] = {
    "small": (TinyLlamaSpec.small("Q8_0"), "random"),
    "medium": (TinyLlamaSpec.medium(), "random"),
    "large": (
        TinyLlamaSpec(
            n_vocab=32000, n_embd=1024, n_layer=16, n_head=16, n_head_kv=8, n_ff=2816, weight_type="Q8_0"
        ),
        "tiled",
    ),
}


async def serve_and_measure(
    installation: EngineInstallation,
    model: Path,
    threads: int,
    tokens: int,
    work: Path,
    performance: PerformancePreset | None = None,
) -> dict[str, Any]:
    """Start ``model`` on ``installation`` through the plugin's launch spec (``--threads``, context
    2048, one slot, ``performance``'s flags), then one greedy completion of ``tokens`` tokens after a
    warm-up; llama.cpp's own ``timings`` (with ``draft_n``/``draft_n_accepted`` when it drafted)
    and the generated token ids."""
    from gpustack_engine_llama_cpp import LlamaCppEngine

    extra = ("--threads", str(threads), "--threads-batch", str(threads), "--parallel", "1")
    request = EngineConformanceSuite().make_request(
        installation, ModelCategory.LLM, (str(model),), DeviceSetup.cpu(), extra=extra
    )
    deployment = request.deployment.model_copy(update={"context_length": 2048, "performance": performance})
    spec = LlamaCppEngine().launch_spec(request.model_copy(update={"deployment": deployment}))
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
            "top_k": 1,
            "seed": 42,
            "ignore_eos": True,
            "cache_prompt": False,
            "return_tokens": True,
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{spec.port}", timeout=600) as client:
            (await client.post("/completion", json={**body, "n_predict": 4})).raise_for_status()  # warm-up
            answer = await client.post("/completion", json=body)
            answer.raise_for_status()
            result = answer.json()
        await supervisor.stop("bench", grace_s=10)
    timings = result["timings"]
    return {
        "ready_s": ready,
        "prompt_tps": timings["prompt_per_second"],
        "decode_tps": timings["predicted_per_second"],
        "decode_tokens": timings["predicted_n"],
        "draft_n": timings.get("draft_n", 0),
        "draft_accepted": timings.get("draft_n_accepted", 0),
        "tokens": result["tokens"],
    }


def paired_ratios(rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    """The smallest and largest ratio of decode tokens/s of ``rows`` to ``base``, round by round
    (samples of one round ran back to back, so they saw about the same load)."""
    ratios = [row["decode_tps"] / ref["decode_tps"] for row, ref in zip(rows, base, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x"


def write_model(name: str, directory: Path) -> Path:
    """The generated GGUF :data:`MODELS` names, written into ``directory``."""
    spec, fill = MODELS[name]
    return write_llama_gguf(directory / f"{name}.gguf", spec, fill=fill)


def main(argv: list[str]) -> None:
    """Measure and print one table (median of the rounds per runtime)."""
    from gpustack_engine_llama_cpp import cached_native_build, ensure_prebuilt

    parser = argparse.ArgumentParser(prog="python -m benchmarks llama_cpp_runtimes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", choices=tuple(MODELS), default="medium")
    args = parser.parse_args(argv)
    options = default_engine_options()
    runtimes = {"prebuilt": ensure_prebuilt(options)}
    native = cached_native_build(options)
    if native is not None:
        runtimes["native"] = native
    with tempfile.TemporaryDirectory(prefix="llama-runtimes-") as tmp:
        work = Path(tmp)
        model = write_model(args.model, work)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in runtimes}
        loads: list[float] = []
        for round_ in range(args.rounds):
            order = list(runtimes) if round_ % 2 == 0 else list(reversed(runtimes))
            for name in order:
                loads.append(os.getloadavg()[0])
                sample = anyio.run(
                    serve_and_measure,
                    runtimes[name],
                    model,
                    args.threads,
                    args.tokens,
                    work / f"{name}-{round_}",
                )
                samples[name].append(
                    {k: v for k, v in sample.items() if k not in ("tokens", "draft_n", "draft_accepted")}
                )
        print(f"model: {args.model} ({model.stat().st_size / 2**20:.1f} MiB, Q8_0), {args.threads} threads, "
              f"{args.tokens} decoded tokens, median of {args.rounds} rounds; load average "
              f"{min(loads):.1f}-{max(loads):.1f}")  # fmt: skip
        print(
            "| runtime | version | ready (s) | prompt tokens/s | decode tokens/s | decode vs prebuilt "
            "| same round, min-max |"
        )
        print("|---|---|---|---|---|---|---|")
        base = statistics.median(s["decode_tps"] for s in samples["prebuilt"])
        for name, installation in runtimes.items():
            rows = samples[name]
            decode = statistics.median(s["decode_tps"] for s in rows)
            ready = statistics.median(s["ready_s"] for s in rows)
            prompt = statistics.median(s["prompt_tps"] for s in rows)
            print(
                f"| {name} | {installation.version} | {ready:.1f} | {prompt:.1f} | {decode:.1f} | "
                f"{decode / base:.2f}x | {paired_ratios(rows, samples['prebuilt'])} |"
            )
        if native is None:
            print(
                "native: no native build installed (engines install llama.cpp 0.3.36 builds it); not measured"
            )
        print(json.dumps({name: rows for name, rows in samples.items()}))
