"""Accuracy of the GGUF memory estimate against a real llama-server on this machine (CPU).

``python -m benchmarks estimation -- [--llama-server PATH] [--out FILE] [--quick]``

For a matrix of generated llama GGUF models (sizes, weight types, context lengths, batch
settings, KV cache types, flash attention on/off) it starts llama-server, reads the buffer sizes
llama.cpp logs (model, KV cache, compute, output) and the process's resident memory, and compares
each with :class:`gpustack_core.estimate.GGUFEstimator`. A second table compares the estimator
with memory figures published for well-known models (sources cited). The binary comes from
``--llama-server``, ``$GPUSTACK_LLAMA_SERVER``, PATH, or the installed llama.cpp engine version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from gpustack_core.estimate import EstimateOptions, GGUFEstimator, read_gguf_file
from gpustack_core.testing.gguf_models import TinyLlamaSpec, llama_info_from_config, write_llama_gguf
from gpustack_core.testing.llama_server import find_llama_server, measure_llama_server

MIB = 2**20
GIB = 2**30
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "estimate" / "fixtures"


@dataclass(frozen=True)
class Case:
    """One llama-server configuration."""

    model: str
    ctx: int
    batch: int = 2048
    ubatch: int = 512
    ctk: str = "f16"
    ctv: str = "f16"
    flash_attn: bool = True


# a training context above every tested one, so llama-server never caps the slot's context
SPECS: dict[str, TinyLlamaSpec] = {
    name: replace(spec, n_ctx_train=65536)
    for name, spec in {
        "tiny-F32": TinyLlamaSpec.tiny("F32"),
        "small-F16": TinyLlamaSpec.small("F16"),
        "small-Q8_0": TinyLlamaSpec.small("Q8_0"),
        "small-Q4_0": TinyLlamaSpec.small("Q4_0"),
        "medium-Q8_0": TinyLlamaSpec.medium("Q8_0"),
        "medium-Q4_0": TinyLlamaSpec.medium("Q4_0"),
    }.items()
}

CASES: tuple[Case, ...] = (
    Case("tiny-F32", 512),
    Case("tiny-F32", 4096),
    Case("tiny-F32", 4096, flash_attn=False),
    Case("small-F16", 2048),
    Case("small-F16", 8192, 512, 128),
    Case("small-F16", 8192, flash_attn=False),
    Case("small-Q8_0", 4096),
    Case("small-Q8_0", 4096, ctk="q8_0", ctv="q8_0"),
    Case("small-Q4_0", 16384),
    Case("small-Q4_0", 16384, ctk="q4_0", ctv="q4_0"),
    Case("medium-Q8_0", 4096),
    Case("medium-Q8_0", 4096, 1024, 1024),
    Case("medium-Q8_0", 4096, 256, 256, flash_attn=False),
    Case("medium-Q4_0", 16384),
    Case("medium-Q4_0", 32768, 2048, 512, "q8_0", "q8_0"),
    Case("medium-Q4_0", 8192, flash_attn=False),
)
QUICK = (CASES[0], CASES[6], CASES[10], CASES[12])


def _pct(est: int, meas: int) -> float:
    return 0.0 if meas == 0 and est == 0 else (est - meas) / meas * 100 if meas else float("inf")


def _run_case(binary: str, model: Path, case: Case) -> dict[str, float | int | str]:
    options = EstimateOptions(
        ctx_size=case.ctx,
        batch_size=case.batch,
        ubatch_size=case.ubatch,
        cache_type_k=case.ctk,
        cache_type_v=case.ctv,
        flash_attention=case.flash_attn,
    )
    est = GGUFEstimator(read_gguf_file(model), options)
    claim = est.cpu_only()
    args = [
        "-c", str(case.ctx), "-b", str(case.batch), "-ub", str(case.ubatch), "-np", "1", "-t", "2",
        "-ctk", case.ctk, "-ctv", case.ctv, "-fa", "on" if case.flash_attn else "off",
        "-fit", "off", "-lv", "4",
    ]  # fmt: skip
    started = time.monotonic()
    # fill the context (up to 8192 tokens) so the compute buffer's pages are touched as they
    # would be at full context; RSS only counts touched pages
    prompt = min(case.ctx - 64, 8192)
    measured = measure_llama_server(binary, model, args, prompt_tokens=prompt, timeout_s=600)
    buffers = measured.buffers
    repack = est.repack_duplicate_bytes(set(range(est.hparams.n_layer)), True)
    weights = est.input_weights + sum(est.layer_weights) + est.output_weights + repack
    est_total_buffers = weights + est.kv_total_bytes + est.compute_bytes() + est.output_buffer_bytes()
    meas_total_buffers = sum(buffers.get(k, 0) for k in ("model", "KV", "compute", "output"))
    return {
        "case": f"{case.model} c={case.ctx} b={case.batch} ub={case.ubatch} kv={case.ctk}/{case.ctv} "
        f"fa={'on' if case.flash_attn else 'off'}",
        "model_est": weights,
        "model_meas": buffers.get("model", 0),
        "kv_est": est.kv_total_bytes,
        "kv_meas": buffers.get("KV", 0),
        "compute_est": est.compute_bytes(),
        "compute_meas": buffers.get("compute", 0),
        "buffers_est": est_total_buffers,
        "buffers_meas": meas_total_buffers,
        "total_est": claim.host_memory_bytes,
        "rss": measured.rss_bytes,
        "peak_rss": measured.peak_rss_bytes,
        "seconds": round(time.monotonic() - started, 1),
    }


def _mib(n: float) -> str:
    return f"{n / MIB:.2f}"


def _published() -> list[dict[str, str]]:
    """Estimator vs figures published for well-known models (see the sources column)."""
    rows: list[dict[str, str]] = []

    def gguf(name: str, ctx: int, what: str, published_mib: float, source: str) -> None:
        cfg = json.loads((FIXTURES / f"{name}.config.json").read_text())
        # those llama.cpp builds reserved n_ubatch output rows (today's llama-server: one per sequence)
        options = EstimateOptions(ctx_size=ctx, flash_attention=False, max_outputs=512)
        est = GGUFEstimator(llama_info_from_config(cfg), options)
        value = est.kv_total_bytes if what == "KV cache" else est.compute_bytes()
        rows.append(
            {
                "model": name,
                "figure": f"llama.cpp {what}, n_ctx {ctx}, ubatch 512, flash-attn off",
                "published": f"{published_mib:.2f} MiB",
                "estimate": f"{value / MIB:.2f} MiB",
                "error": f"{(value / MIB - published_mib) / published_mib * 100:+.2f}%",
                "source": source,
            }
        )

    o7585 = "ollama/ollama#7585 (CPU log, Qwen2.5 7B Q4_K_M)"
    o9496 = "ollama/ollama#9496 (CPU log, mistral:latest 7B; n_ctx 32384 padded to 32 by that llama.cpp)"
    gguf("Qwen2.5-7B-Instruct", 8192, "KV cache", 448.00, o7585)
    gguf("Qwen2.5-7B-Instruct", 8192, "compute buffer", 492.01, o7585)
    gguf("Mistral-7B-Instruct-v0.2", 32384, "KV cache", 4048.00, o9496)
    gguf("Mistral-7B-Instruct-v0.2", 32384, "compute buffer", 2119.26, o9496)

    return rows


def _render(results: list[dict[str, float | int | str]], published: list[dict[str, str]], binary: str) -> str:
    lines = [
        "# Estimation accuracy",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {platform.machine()} VM, "
        f"{os.cpu_count()} cores, 24 GB RAM; llama-server CPU build (`{binary}`),",
        "run with `-np 1 -t 2 -fit off -lv 4`.",
        "Run: `python -m benchmarks estimation -- --llama-server PATH`.",
        "",
        "Generated random-weight llama models (gpustack_core.testing.gguf_models): tiny = 2 blocks,",
        "n_embd 64, 512 tokens (~150 k params); small = 4 blocks, n_embd 256, GQA 8/2, 8 k tokens (~7 M);",
        "medium = 8 blocks, n_embd 512, GQA 8/4, 32 k tokens (~58 M). Measured buffer sizes (MiB) are the",
        "ones llama.cpp logs: model = `CPU_Mapped` + `CPU_REPACK` model buffers (Q4_0 matrices are",
        "repacked on this AVX-512 CPU; the estimate adds the copy), `CPU KV buffer`, `CPU compute",
        "buffer`, `CPU output buffer`. RSS is `VmRSS` (peak `VmHWM`) of the server after one completion",
        "request whose prompt fills the context up to 8192 tokens (RSS counts pages once touched). The",
        "estimate's total is the CPU-only claim: buffers + CPU matmul work buffer + runtime overhead.",
        "The compute-buffer coefficients were fitted on a separate sweep (42 runs, docs/estimation.md);",
        "the runtime-overhead constant (21 MiB + 96 B per vocabulary entry) is RSS minus buffers on this",
        "matrix, so the RSS column is partly in-sample; the buffer columns are not.",
        "",
        "| case | weights est / meas | KV est / meas | compute est / meas | err compute | buffers err | "
        "total est / RSS (peak) | err vs RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    worst_buf = 0.0
    worst_rss = 0.0
    for r in results:
        ec = _pct(int(r["compute_est"]), int(r["compute_meas"]))
        eb = _pct(int(r["buffers_est"]), int(r["buffers_meas"]))
        er = _pct(int(r["total_est"]), int(r["rss"]))
        worst_buf = max(worst_buf, abs(eb))
        worst_rss = max(worst_rss, abs(er))
        lines.append(
            f"| {r['case']} | {_mib(float(r['model_est']))} / {_mib(float(r['model_meas']))} | "
            f"{_mib(float(r['kv_est']))} / {_mib(float(r['kv_meas']))} | "
            f"{_mib(float(r['compute_est']))} / {_mib(float(r['compute_meas']))} | {ec:+.1f}% | {eb:+.1f}% | "
            f"{_mib(float(r['total_est']))} / {_mib(float(r['rss']))} ({_mib(float(r['peak_rss']))}) | "
            f"{er:+.1f}% |"
        )
    lines += [
        "",
        "Where the numbers deviate and why: the tiny model has `n_ff = 2 n_embd`, a shape whose",
        "allocator layout the feed-forward formula overestimates (compute +8%; real models have",
        "`n_ff >= 2.7 n_embd`). With contexts above 8192 the prompt fills only 8192 cells, so part of",
        "the KQ mask (and compute buffer) is never touched and RSS stays below the reservation the",
        "estimate reports (c=16384/32768 rows). Small models' RSS also carries a few MiB of",
        "request-dependent host memory (prompt cache, HTTP buffers) the fixed overhead averages out.",
        "",
        "Build dependence: the runtime-overhead constant (21 MiB + 96 B per vocabulary entry) was fitted",
        "on a shared-library build of llama-server. The build the llama.cpp engine plugin installs (and",
        "CI uses) is linked statically and maps a few MiB less, so with it every total lands a little",
        "high: the buffer totals meet the 10% target in every case (largest 5.7%), while the total",
        "against RSS exceeds 10% for the smallest model (where 4 MiB is 20% of the process) and for",
        "contexts of 16384 and above (cells the prompt never touches). All of these misses are",
        "over-estimates, the safe side for scheduling; re-fitting the overhead per build is open work.",
        "",
        f"Largest error of the buffer total (weights + KV + compute + output): {worst_buf:.1f}%. "
        f"Largest error of the total against RSS: {worst_rss:.1f}%.",
        "",
        "## Published figures of well-known models",
        "",
        "Config values in tests/estimate/fixtures/*.config.json (transcribed from each model's config.json).",
        "vLLM and SGLang figures: docs/benchmarks/estimation-engines.md",
        "(`python -m benchmarks estimation_engines`).",
        "",
        "| model | figure | published | estimate | error | source |",
        "|---|---|---|---|---|---|",
    ]
    for p in published:
        lines.append(
            f"| {p['model']} | {p['figure']} | {p['published']} | {p['estimate']} | {p['error']} | "
            f"{p['source']} |"
        )
    return "\n".join(lines) + "\n"


def _installed_llama_server() -> str | None:
    """The llama.cpp engine plugin's installed build (``gpustack-core engines install llama.cpp``)."""
    from gpustack_core.engines import default_engine_options
    from gpustack_core.plugins import PluginHost

    try:
        engine = PluginHost(allow=["engines:llama-cpp"]).engine("llama.cpp")
    except Exception:  # plugin not installed
        return None
    installation = engine.locate(None, default_engine_options())
    return installation.executable if installation is not None else None


def main(argv: list[str]) -> None:
    """Run the matrix, print the table, and write it to ``--out`` when given."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks estimation")
    parser.add_argument("--llama-server", default=None, help="llama-server binary")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--quick", action="store_true", help="four cases only")
    args = parser.parse_args(argv)
    binary = find_llama_server(args.llama_server) or _installed_llama_server()
    published = _published()
    results: list[dict[str, float | int | str]] = []
    if binary is None:
        print(
            "no llama-server found (--llama-server, $GPUSTACK_LLAMA_SERVER, PATH, or an installed "
            "llama.cpp engine version: `gpustack-core engines install llama.cpp`): published figures only"
        )
    else:
        with tempfile.TemporaryDirectory(prefix="gpustack-est-") as tmp:
            paths: dict[str, Path] = {}
            for case in QUICK if args.quick else CASES:
                if case.model not in paths:
                    paths[case.model] = write_llama_gguf(Path(tmp) / f"{case.model}.gguf", SPECS[case.model])
                results.append(_run_case(binary, paths[case.model], case))
                print(json.dumps(results[-1]), flush=True)
    text = _render(results, published, binary or "none")
    print(text)
    if args.out:
        Path(args.out).write_text(text)
