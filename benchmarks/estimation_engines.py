"""The safetensors estimator against vLLM/SGLang startup figures published in public threads.

``python -m benchmarks estimation_engines [-- --out docs/benchmarks/estimation-engines.md]``

No engine runs here: each case of ``tests/estimate/fixtures/engine_logs.json`` names the model
(its config.json is a fixture next to it), the GPU's total memory, the tensor-parallel size, the
memory fraction and the batch sizes the engine profiled, and what the engine printed (weights,
activation peak, non-torch memory, KV cache in GiB and tokens). The estimator is given the same
configuration; the table puts its figures beside the logged ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpustack_core.estimate import EstimateOptions, KvCapacity, VllmEstimator

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "estimate" / "fixtures"
CASES = FIXTURES / "engine_logs.json"
GIB = 2**30


@dataclass(frozen=True)
class Comparison:
    """One published case with the estimator's figures for the same configuration."""

    case: dict[str, Any]
    estimator: VllmEstimator
    capacity: KvCapacity

    @property
    def logged(self) -> dict[str, float]:
        """What the engine printed (or what its printed figures imply, see ``derived``)."""
        logged: dict[str, float] = self.case["logged"]
        return logged

    @property
    def tp(self) -> int:
        """Tensor-parallel size of the case."""
        return int(self.case["tp"])

    @property
    def weights_gib(self) -> float:
        """Estimated weights per device."""
        return self.estimator.weight_bytes / self.tp / GIB

    @property
    def activation_gib(self) -> float:
        """Estimated activation peak per device (vLLM's profiling pass)."""
        return self.estimator.activation_bytes(self.tp) / GIB

    @property
    def non_torch_gib(self) -> float:
        """Estimated non-torch memory per device."""
        return self.estimator.non_torch_bytes(self.tp) / GIB

    @property
    def kv_gib(self) -> float:
        """Estimated KV cache per device."""
        return self.capacity.kv_bytes / GIB

    def kv_error(self) -> float:
        """Relative error of the KV capacity: in tokens where the engine printed them, else in GiB."""
        if "kv_tokens" in self.logged:
            return self.capacity.tokens / self.logged["kv_tokens"] - 1
        return self.kv_gib / self.logged["kv_gib"] - 1

    def weights_error(self) -> float | None:
        """Relative error of the weights per device (None where the engine's log does not show them)."""
        if "weights_gib" not in self.logged:
            return None
        return self.weights_gib / self.logged["weights_gib"] - 1


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    """The published cases."""
    cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
    return cases


def model_config(name: str) -> dict[str, Any]:
    """A config.json fixture by model name."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.config.json").read_text())
    return data


def compare(case: dict[str, Any]) -> Comparison:
    """Estimate ``case``'s configuration."""
    options: dict[str, Any] = {
        "engine": case["engine"],
        "max_model_len": case["max_model_len"],
        "max_num_batched_tokens": case["max_num_batched_tokens"],
        "max_num_seqs": case["max_num_seqs"],
        "tensor_parallel_size": case["tp"],
    }
    if case["engine"] == "sglang":
        options["mem_fraction_static"] = case["fraction"]
    else:
        options["gpu_memory_utilization"] = case["fraction"]
    est = VllmEstimator(model_config(case["model"]), EstimateOptions(**options))
    capacity = est.kv_capacity(int(case["tp"]), int(case["total_gib"] * GIB))
    return Comparison(case=case, estimator=est, capacity=capacity)


def _pair(estimate: float, logged: float | None, digits: int = 2) -> str:
    if logged is None:
        return f"- / {estimate:.{digits}f}"
    return f"{logged:.{digits}f} / {estimate:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def render(comparisons: list[Comparison]) -> str:
    """The markdown page (docs/benchmarks/estimation-engines.md)."""
    lines = [
        "# Estimation against published vLLM / SGLang startup logs",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()} "
        "(pure computation, no engine or GPU involved; load is irrelevant).",
        "Run: `python -m benchmarks estimation_engines -- --out docs/benchmarks/estimation-engines.md`.",
        "Cases, with the log lines quoted and their sources: `tests/estimate/fixtures/engine_logs.json`;",
        "model configs: `tests/estimate/fixtures/*.config.json` (transcribed from each model's",
        "config.json on Hugging Face). `tests/estimate/test_engine_logs.py` holds every case to its",
        "tolerance: weights within 3%, KV capacity within 10% (in tokens where the engine printed",
        "them, else in GiB).",
        "",
        "The estimator gets the case's configuration: model config.json (no safetensors headers: weights",
        "come from the parameter count and `torch_dtype`/`quantization_config`), the GPU's total memory,",
        "`--tensor-parallel-size`, `--gpu-memory-utilization` (vLLM) or `--mem-fraction-static` (SGLang),",
        "`max_model_len` and the batch the engine profiled (`max_num_batched_tokens`, `max_num_seqs`).",
        "Logged / estimated, GiB per GPU; `derived` figures in the fixture are computed from the same",
        "log's printed figures.",
        "",
        "| case | engine | source | weights | activation | non-torch | KV GiB | KV tokens | "
        "error weights | error KV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        logged = c.logged
        tokens = logged.get("kv_tokens")
        tol = c.case.get("tolerance")
        note = " (outlier, see below)" if tol is None else ""
        lines.append(
            f"| {c.case['id']} ({c.case['model']}, {c.case['gpu']}, TP {c.tp}, "
            f"{'mem_fraction_static' if c.case['engine'] == 'sglang' else 'gmu'} {c.case['fraction']}, "
            f"max_model_len {c.case['max_model_len']}){note} | {c.case['engine']} | {c.case['source']} | "
            f"{_pair(c.weights_gib, logged.get('weights_gib'))} | "
            + (
                "- (in the reserve) | "
                if c.case["engine"] == "sglang"
                else f"{_pair(c.activation_gib, logged.get('activation_gib'))} | "
            )
            + f"{_pair(c.non_torch_gib, logged.get('non_torch_gib'))} | "
            f"{_pair(c.kv_gib, logged.get('kv_gib'))} | "
            f"{'-' if tokens is None else int(tokens)} / {c.capacity.tokens} | "
            f"{_pct(c.weights_error())} | {_pct(c.kv_error())} |"
        )
    held = [c for c in comparisons if c.case.get("tolerance") is not None]
    worst_kv = max(abs(c.kv_error()) for c in held)
    worst_w = max(abs(e) for c in held if (e := c.weights_error()) is not None)
    lines += [
        "",
        f"Largest error over the {len(held)} held cases: weights {worst_w * 100:.1f}%, "
        f"KV capacity {worst_kv * 100:.1f}%.",
        "",
        "Outliers (kept in the table, not held to the tolerance):",
        "",
    ]
    outliers = [c for c in comparisons if c.case.get("tolerance") is None]
    lines += [f"- {c.case['id']}: {c.case['outlier']}" for c in outliers]
    lines += [
        "",
        "## What the comparison changed in the estimator",
        "",
        "Before (main at 67ac6eb; every case but the AMD one) the KV capacity came out -25.6% and -33.8%",
        "on the RTX 3090 rows, -23.0% on the RTX 4090 pair, -2.3% for Qwen2.5-0.5B, +1.6% on both H100",
        "rows and -9.0% for SGLang on the H100s (which the estimator sized with vLLM's semantics then).",
        "Three causes, three fixes:",
        "",
        "- **Activation peak: the larger phase, not the sum.** vLLM's profiling pass runs the forward pass",
        "  and then the sampler; the forward pass's activations are freed before the sampler's float32",
        "  logits, probabilities and log-probabilities exist. The RTX 3090 logs show it: 2.07 and 2.99",
        "  GiB at 20000 and 29000 tokens are the forward pass alone (110592 B/token for Llama-3.1-8B,",
        "  to 0.5%); the old sum added the sampler's 0.37 GiB on top. A small model with a large",
        "  vocabulary peaks in the sampler instead (Qwen2.5-0.5B: 0.43 GiB estimated, 0.59 logged).",
        "- **Non-torch memory: 0.5 GiB, +1 GiB with TP > 1** (was 1 GiB, +2 GiB). Logged on one",
        "  device: 0.11 GiB (A100, eager) and 0.35 GiB (RTX 3090); 0.25 GiB in all for TP 2 on PCIe",
        "  RTX 4090s; 1.79 GiB (TP 1) and 3.58 GiB (TP 2) on NVLink H100s at the profiling overhaul.",
        "  The estimator cannot see the interconnect; the new constants sit between, which is why the",
        "  H100 rows now come out 3-5% high (the safe side for scheduling) where they were 1.6% high.",
        '- **SGLang semantics** (`EstimateOptions(engine="sglang", mem_fraction_static=...)`): SGLang',
        "  sizes its pool as the memory free after loading minus `(1 - mem_fraction_static) x total`,",
        "  i.e. `mem_fraction_static x total - weights - memory used before loading`, in single tokens;",
        "  no activation peak comes out of it (activations and CUDA graphs live in the reserve). The",
        "  claim divides by `mem_fraction_static` and has no activation item.",
        "",
        "Also new: `VllmEstimator.kv_capacity(tp, device_total_bytes)` gives the tokens the engine",
        "allocates (vLLM: whole 16-token blocks, as its `# GPU blocks` x 16), and the claim's",
        "`KV cache on the given devices` note uses it.",
        "",
        "Limits: the logs span vLLM releases from late 2024 to 2026 whose profilers differ (the",
        "activation line of the profiling-overhaul H100 log, 1.26 GiB at both TP 1 and TP 2, is not the",
        "forward pass of either: 0.84 / 0.52 estimated); the profiled batch (`max_num_batched_tokens`,",
        "`max_num_seqs`) is each case's engine default, which changed between releases (V0 without",
        "chunked prefill: `max_model_len`; V1: 2048 below 70 GiB of GPU memory, 8192 above); CUDA",
        "graph memory, which recent vLLM releases also subtract, is not modelled separately;",
        "weights come from config.json here (safetensors headers, when the source read them, are",
        "exact). Quantized checkpoints that keep some layers in 16 bits (`modules_to_not_convert`,",
        "e.g. Meta's Llama-3.1-405B-FP8, logged at 57.75 GiB per GPU with TP 8 in",
        "vllm-project/vllm#6746) are under-estimated from config.json alone; not in the table.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Print the table, or write it with ``--out PATH``."""
    parser = argparse.ArgumentParser(prog="benchmarks estimation_engines")
    parser.add_argument("--out", type=Path, help="write the markdown page here")
    args = parser.parse_args(argv)
    page = render([compare(c) for c in load_cases()])
    if args.out:
        args.out.write_text(page)
        print(f"wrote {args.out}")
    else:
        print(page)
