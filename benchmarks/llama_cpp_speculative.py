"""llama.cpp speculative decoding with a draft model on CPU: decode tokens/s with and without.

``python -m benchmarks llama_cpp_speculative [-- --rounds 3 --threads 2 --tokens 64 --model large
--runtime prebuilt --draft-tokens 4]``

One generated target GGUF (``--model``'s shape, see :data:`benchmarks.llama_cpp_runtimes.MODELS`,
weights "tiled") served four ways through the plugin's launch spec and its performance preset
(``draft_model``: ``--spec-type draft-simple --spec-draft-model ... --spec-draft-n-max N``):

- ``plain``: no speculation;
- ``random draft``: 2 layers, ``n_embd`` 256, the target's vocabulary, its own random weights: it
  almost never guesses the target's token (acceptance ~0: the cost of drafting in vain);
- ``self draft``: the target itself as its draft: every drafted token is accepted, but drafting
  costs as much as the target, so it shows the verification's gain and the drafting's full price;
- ``exact draft``: the target's first layer with its embeddings and output (1 of its layers). The
  target's other layers have zero output projections (``attn_output``, ``ffn_down``), so they add
  nothing to the residual stream while costing their full compute and memory traffic: the target
  computes what the 1-layer draft computes, the draft is accepted every time, and it costs a
  fraction of the target. This is the upper bound a trained draft of that size approaches.

Random weights make the acceptance rate of a real draft pair meaningless: the rows bound what a
trained pair (acceptance in between) would give, they do not predict it. Each round runs the
configurations in a rotating order; each sample is a greedy completion (``ignore_eos``) of
``--tokens`` tokens after a warm-up, with llama.cpp's own ``timings`` (decode tokens/s, drafted
and accepted tokens). Every sample's token ids are compared with the plain run's: speculation must
not change them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import quantize

from benchmarks.llama_cpp_runtimes import MODELS, paired_ratios, serve_and_measure
from gpustack_core.engines import default_engine_options
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import EngineInstallation, PerformancePreset, SpeculativeDecoding

__all__ = ["main"]


def _installation(runtime: str) -> EngineInstallation:
    from gpustack_engine_llama_cpp import cached_native_build, ensure_prebuilt

    options = default_engine_options()
    if runtime == "prebuilt":
        return ensure_prebuilt(options)
    native = cached_native_build(options)
    if native is None:
        raise SystemExit(
            "no native llama.cpp build installed: gpustack-core engines install llama.cpp 0.3.36"
        )
    return native


def _prepare_target(path: Path, spec: TinyLlamaSpec, keep: int) -> None:
    """Make the "tiled" target at ``path`` usable for the exact draft, in place.

    The output matrix gets fresh random rows (tiled rows repeat, which makes tokens tie for the
    greedy pick and a tie may break one way in the draft and the other in the target). Layers from
    ``keep`` on get zero ``attn_output`` and ``ffn_down``: they then add exactly nothing to the
    residual stream (zero Q8_0/F16/F32 blocks decode to 0.0).
    """
    reader = GGUFReader(path, "r+")
    rng = np.random.default_rng(spec.seed + 7)
    for tensor in reader.tensors:
        parts = tensor.name.split(".")
        if tensor.name == "output.weight":
            values = (rng.standard_normal((spec.n_vocab, spec.n_embd), dtype=np.float32) * 0.02).astype(
                np.float32
            )
            encoded = (
                values
                if tensor.tensor_type == GGMLQuantizationType.F32
                else quantize(values, tensor.tensor_type)
            )
            tensor.data[...] = encoded.reshape(tensor.data.shape)
        elif parts[0] == "blk" and int(parts[1]) >= keep and parts[2] in ("attn_output", "ffn_down"):
            tensor.data[...] = 0
    reader.data.flush()


def _copy_shared_tensors(source: Path, draft: Path) -> None:
    """Copy every tensor ``draft`` has (same names, same shapes) from ``source``, in place."""
    tensors = {t.name: t for t in GGUFReader(source).tensors}
    reader = GGUFReader(draft, "r+")
    for tensor in reader.tensors:
        tensor.data[...] = tensors[tensor.name].data
    reader.data.flush()


def main(argv: list[str]) -> None:
    """Measure and print one table (median of the rounds per configuration)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks llama_cpp_speculative")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--draft-tokens", type=int, default=4, help="num_speculative_tokens")
    parser.add_argument("--model", choices=tuple(MODELS), default="large")
    parser.add_argument("--runtime", choices=("prebuilt", "native"), default="prebuilt")
    args = parser.parse_args(argv)
    installation = _installation(args.runtime)
    with tempfile.TemporaryDirectory(prefix="llama-spec-") as tmp:
        work = Path(tmp)
        spec = MODELS[args.model][0]
        target = write_llama_gguf(work / "target.gguf", spec, fill="tiled")
        _prepare_target(target, spec, keep=1)
        random_draft = TinyLlamaSpec(
            n_vocab=spec.n_vocab, n_embd=256, n_layer=2, n_head=4, n_head_kv=4, n_ff=768,
            weight_type=spec.weight_type, seed=spec.seed + 1, name="random-draft",
        )  # fmt: skip
        exact_draft = replace(spec, n_layer=1, name="exact-draft")
        drafts = {
            "random draft": write_llama_gguf(work / "random-draft.gguf", random_draft),
            "self draft": Path(shutil.copy(target, work / "self-draft.gguf")),
            "exact draft": write_llama_gguf(work / "exact-draft.gguf", exact_draft, fill="zeros"),
        }
        _copy_shared_tensors(target, drafts["exact draft"])
        presets: dict[str, PerformancePreset | None] = {"plain": None}
        for name, path in drafts.items():
            method = SpeculativeDecoding(
                method="draft_model", draft_model=str(path), num_speculative_tokens=args.draft_tokens
            )
            presets[name] = PerformancePreset(speculative=method)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in presets}
        loads: list[float] = []
        for round_ in range(args.rounds):
            names = list(presets)
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                loads.append(os.getloadavg()[0])
                sample = anyio.run(
                    serve_and_measure,
                    installation,
                    target,
                    args.threads,
                    args.tokens,
                    work / f"{name.replace(' ', '-')}-{round_}",
                    presets[name],
                )
                samples[name].append(sample)
        reference = samples["plain"][0]["tokens"]
        print(
            f"runtime: {args.runtime} ({installation.version}); target: {args.model} "
            f"({target.stat().st_size / 2**20:.0f} MiB, {spec.n_params / 1e6:.0f} M parameters, "
            f"{spec.weight_type}); random draft {drafts['random draft'].stat().st_size / 2**20:.0f} MiB, "
            f"exact draft {drafts['exact draft'].stat().st_size / 2**20:.0f} MiB "
            f"({exact_draft.n_params / 1e6:.0f} M); {args.threads} threads, {args.tokens} decoded tokens, "
            f"{args.draft_tokens} drafted per step, median of {args.rounds} rounds; load average "
            f"{min(loads):.1f}-{max(loads):.1f}"
        )
        print(
            "| configuration | decode tokens/s | vs plain | same round, min-max | drafted | accepted "
            "| acceptance | same tokens |"
        )
        print("|---|---|---|---|---|---|---|---|")
        base = statistics.median(s["decode_tps"] for s in samples["plain"])
        for name, rows in samples.items():
            decode = statistics.median(s["decode_tps"] for s in rows)
            drafted = sum(s["draft_n"] for s in rows)
            accepted = sum(s["draft_accepted"] for s in rows)
            rate = f"{accepted / drafted:.0%}" if drafted else "-"
            same = all(s["tokens"] == reference for s in rows)
            print(
                f"| {name} | {decode:.1f} | {decode / base:.2f}x | {paired_ratios(rows, samples['plain'])} | "
                f"{drafted} | {accepted} | {rate} | {'yes' if same else 'NO'} |"
            )
        raw = {
            name: [{k: v for k, v in s.items() if k != "tokens"} for s in rows]
            for name, rows in samples.items()
        }
        print(json.dumps(raw))
