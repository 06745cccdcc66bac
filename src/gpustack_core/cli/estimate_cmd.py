"""``gpustack-core estimate``: the memory a model needs, per device, with a readable breakdown."""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

import typer
from rich.table import Table

from gpustack_core.errors import GPUStackError
from gpustack_core.types import ModelMetadata, ModelRef, ResourceEstimate, SourceOptions

from ._common import console, make_host, print_json

__all__ = ["format_bytes", "parse_size", "register"]

_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
    "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_size(text: str) -> int:
    """Parse ``24GiB``, ``80G``, ``512MiB`` or a byte count into bytes.

    Raises:
        typer.BadParameter: the text is not a size.
    """
    m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise typer.BadParameter(f"{text!r} is not a size; write e.g. 24GiB, 80GB, 512MiB or a byte count")
    return int(float(m.group(1)) * _UNITS[unit])


def format_bytes(n: int) -> str:
    """``n`` bytes as GiB or MiB with two decimals."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def _parse_ref(text: str) -> ModelRef:
    if os.path.exists(text) or text.startswith(("/", "./", "../", "~")):
        return ModelRef(source="local", id=os.path.abspath(os.path.expanduser(text)))
    return ModelRef.parse(text)


def _models_api() -> Any:
    # looked up at call time, so that a test can stand in for it through sys.modules
    return importlib.import_module("gpustack_core.models.api")


def _resolve(ref: ModelRef, source_options: SourceOptions) -> tuple[ModelMetadata, str | None]:
    """The metadata, and the local path the estimate should read the model from, if any.

    The local source has already read the selected GGUF headers: they are not read again. A
    local safetensors model keeps its path (a single file's config.json lies beside it).
    """
    metadata: ModelMetadata = _models_api().resolve_model(make_host(), ref, source_options)
    local_path = ref.id if ref.source == "local" and not metadata.gguf_tensors else None
    return metadata, local_path


def _print(estimate: ResourceEstimate) -> None:
    out = console()
    out.print(f"[bold]{estimate.model}[/]")
    for note in estimate.notes:
        out.print(f"  {note}")
    for n, claim in enumerate(estimate.claims, 1):
        title = f"option {n}: {claim.strategy}"
        if claim.strategy == "partial_offload":
            title += f" ({claim.offloaded_layers}/{claim.total_layers} layers on devices)"
        if claim.tensor_parallel_size > 1:
            title += f" (tensor parallel {claim.tensor_parallel_size})"
        table = Table(title=title, title_justify="left")
        table.add_column("where")
        table.add_column("what")
        table.add_column("size", justify="right")
        for i, device in enumerate(claim.devices):
            for item in device.items:
                table.add_row(f"device {i}", item.label, format_bytes(item.bytes))
            table.add_row(f"device {i}", "[bold]total[/]", f"[bold]{format_bytes(device.memory_bytes)}[/]")
        for item in claim.host_items:
            table.add_row("host", item.label, format_bytes(item.bytes))
        if claim.host_items:
            table.add_row("host", "[bold]total[/]", f"[bold]{format_bytes(claim.host_memory_bytes)}[/]")
        out.print(table)
        for note in claim.notes:
            out.print(f"  {note}")


def _runtime(name: str | None, capability: str | None, sms: int | None) -> Any:
    """The ``runtime`` callable for ``--accelerator`` (None without it).

    Raises:
        GPUStackError: the plugin is not installed, or it finds no device and none was described.
    """
    from gpustack_core.estimate import runtime_overhead_for
    from gpustack_core.types import DetectOptions, Device

    if name is None:
        if capability is not None or sms is not None:
            raise typer.BadParameter("--compute-capability and --sm-count describe a device of --accelerator")
        return None
    plugin = make_host().accelerator(name)
    if capability is not None or sms is not None:
        extra = {"sm_count": str(sms)} if sms is not None else {}
        devices = [
            Device(
                accelerator=name, vendor=plugin.vendor or name, index=0, uuid="described", name="described",
                compute_capability=capability, memory_total_bytes=0, extra=extra,
            )
        ]  # fmt: skip
    else:
        devices = plugin.detect(DetectOptions())
        if not devices:
            raise GPUStackError(
                f"--accelerator {name}: no device found; describe one with --compute-capability"
            )
    return runtime_overhead_for([(plugin, d) for d in devices])


def estimate(
    model_ref: str = typer.Argument(..., help="SOURCE:ID[@REVISION][#SELECTOR] or a local path"),
    ctx_size: int | None = typer.Option(
        None, "--ctx-size", "-c", help="llama.cpp context (default: training)"
    ),
    batch_size: int = typer.Option(2048, "--batch-size", "-b", help="llama.cpp logical batch size"),
    ubatch_size: int = typer.Option(512, "--ubatch-size", "-ub", help="llama.cpp physical batch size"),
    cache_type_k: str = typer.Option("f16", "--cache-type-k", "-ctk", help="KV cache type for K"),
    cache_type_v: str = typer.Option("f16", "--cache-type-v", "-ctv", help="KV cache type for V"),
    flash_attn: bool | None = typer.Option(None, "--flash-attn/--no-flash-attn", help="default: auto (on)"),
    parallel: int = typer.Option(1, "--parallel", "-np", help="llama.cpp parallel sequences"),
    gpu_layers: int | None = typer.Option(None, "--gpu-layers", "-ngl", help="most layers to offload"),
    no_mmap: bool = typer.Option(False, "--no-mmap", help="llama.cpp --no-mmap"),
    no_repack: bool = typer.Option(False, "--no-repack", help="llama.cpp --no-repack (CPU weight repacking)"),
    gpus: int | None = typer.Option(None, "--gpus", help="number of devices a claim may use"),
    device_memory: str | None = typer.Option(
        None, "--device-memory", help="free memory per device, comma-separated, e.g. 24GiB,24GiB"
    ),
    tensor_split: str | None = typer.Option(None, "--tensor-split", "-ts", help="proportions, e.g. 3,1"),
    rpc: list[str] | None = typer.Option(  # noqa: B008 (typer declares options this way)
        None, "--rpc", help="HOST:PORT=SIZE of a llama.cpp rpc-server (repeatable)"
    ),
    engine: str = typer.Option(
        "vllm", "--engine", help="safetensors memory semantics: vllm or sglang (--mem-fraction-static)"
    ),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", help="vLLM fraction"),
    mem_fraction_static: float | None = typer.Option(
        None, "--mem-fraction-static", help="SGLang fraction (default: --gpu-memory-utilization)"
    ),
    max_model_len: int | None = typer.Option(None, "--max-model-len", help="vLLM max model length"),
    tensor_parallel_size: int | None = typer.Option(
        None, "--tensor-parallel-size", "-tp", help="vLLM TP size"
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="model cache (hub refs)"),
    offline: bool = typer.Option(False, "--offline", help="use cached metadata only"),
    token: str | None = typer.Option(
        None, "--token", envvar="GPUSTACK_CORE_TOKEN", help="Access token for gated models (as for download)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
    accelerator: str | None = typer.Option(
        None,
        "--accelerator",
        help="add this accelerator plugin's per-process overhead (e.g. cuda) for this machine's devices",
    ),
    compute_capability: str | None = typer.Option(
        None, "--compute-capability", help="with --accelerator: describe the device instead of detecting it"
    ),
    sm_count: int | None = typer.Option(None, "--sm-count", help="with --compute-capability: SMs / CUs"),
) -> None:
    """Estimate the memory a model needs: per device, per strategy, with a breakdown."""
    # imported here: gguf and numpy are heavy, and every other command should start fast
    from gpustack_core.estimate import EstimateOptions, RemoteDevice, estimate_model

    remote: list[RemoteDevice] = []
    for spec in rpc or []:
        endpoint, sep, size = spec.rpartition("=")
        if not sep or not endpoint:
            raise typer.BadParameter(f"--rpc {spec!r}: write HOST:PORT=SIZE, e.g. 10.0.0.2:50052=24GiB")
        remote.append(RemoteDevice(endpoint=endpoint, memory_bytes=parse_size(size)))
    try:
        options = EstimateOptions(
            ctx_size=ctx_size,
            batch_size=batch_size,
            ubatch_size=ubatch_size,
            cache_type_k=cache_type_k,
            cache_type_v=cache_type_v,
            flash_attention=flash_attn,
            parallel=parallel,
            gpu_layers=gpu_layers,
            mmap=not no_mmap,
            cpu_repack=not no_repack,
            gpus=gpus,
            device_memory=tuple(parse_size(s) for s in device_memory.split(",")) if device_memory else (),
            tensor_split=tuple(float(s) for s in tensor_split.split(",")) if tensor_split else (),
            rpc_devices=tuple(remote),
            engine=engine,  # validated by EstimateOptions (vllm or sglang)
            gpu_memory_utilization=gpu_memory_utilization,
            mem_fraction_static=mem_fraction_static,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
        )
    except ValueError as exc:
        console(stderr=True).print(f"[red]invalid options[/]: {exc}")
        raise typer.Exit(2) from None
    try:
        ref = _parse_ref(model_ref)
        source_options = SourceOptions(
            cache_dir=cache_dir or str(_models_api().default_cache_dir()), offline=offline, token=token
        )
        metadata, local_path = _resolve(ref, source_options)
        runtime = _runtime(accelerator, compute_capability, sm_count)
        result = estimate_model(metadata, options, local_path=local_path, runtime=runtime)
    except GPUStackError as exc:
        console(stderr=True).print(f"[red]error[/]: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        _print(result)


def register(app: typer.Typer) -> None:
    """Add the ``estimate`` command."""
    app.command("estimate")(estimate)
