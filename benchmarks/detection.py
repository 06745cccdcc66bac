"""Detection latency per accelerator plugin.

``python -m benchmarks detection [-- --repeat N] [-- --fixtures]``

* default: every installed accelerator plugin against this machine's real tools and drivers;
* ``--fixtures``: every built-in plugin against its recorded fixtures, served by fake tools on a
  private ``PATH`` (what CI can measure: process start-up of the tool + parsing);
* where NVML loads a real GPU, also NVML on its own: ``nvmlInit`` and a full scan with NVML held
  open (the 50 ms target is for the scan).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpustack_core import DetectOptions, PluginHost
from gpustack_core.errors import AcceleratorError

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins" / "accelerators"


def _time(fn: Callable[[], Any], repeat: int) -> tuple[list[float], str]:
    samples: list[float] = []
    outcome = ""
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            result = fn()
            outcome = f"{len(result)} device(s)"
        except AcceleratorError as exc:
            outcome = f"{type(exc).__name__}"
        samples.append((time.perf_counter() - started) * 1000)
    return samples, outcome


def _row(name: str, samples: list[float], outcome: str) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median = statistics.median(ordered)
    return f"| {name} | {median:.2f} | {p95:.2f} | {ordered[0]:.2f} | {len(ordered)} | {outcome} |"


def _real(repeat: int) -> list[str]:
    rows = []
    host = PluginHost()
    for accelerator in host.accelerators():
        samples, outcome = _time(lambda a=accelerator: a.detect(DetectOptions()), repeat)
        rows.append(_row(f"{accelerator.name} (this machine)", samples, outcome))
    return rows


def _nvml(repeat: int) -> list[str]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        started = time.perf_counter()
        pynvml.nvmlInit()
        init_ms = (time.perf_counter() - started) * 1000
    except pynvml.NVMLError:
        return []
    try:
        from gpustack_accelerator_cuda import read_nvml

        class _Held:
            """pynvml with init/shutdown made no-ops: the scan alone."""

            def __getattr__(self, name: str) -> Any:
                if name in ("nvmlInit", "nvmlShutdown"):
                    return lambda: None
                return getattr(pynvml, name)

        held = _Held()
        samples, outcome = _time(lambda: read_nvml(held, "cuda", "nvidia"), repeat)
    finally:
        pynvml.nvmlShutdown()
    return [
        f"| NVML nvmlInit (first call in process) | {init_ms:.2f} | - | - | 1 | |",
        _row("NVML scan, library held open", samples, outcome),
    ]


def _fixtures(repeat: int) -> list[str]:
    from gpustack_core.testing import FakeTools

    rows = []
    for name, make in _fixture_setups().items():
        with tempfile.TemporaryDirectory() as tmp:
            accelerator, options = make(FakeTools(Path(tmp) / "bin"))
            samples, outcome = _time(lambda a=accelerator, o=options: a.detect(o), repeat)
        rows.append(_row(f"{name} (fixtures, fake tools)", samples, outcome))
    return rows


def _fixture_setups() -> dict[str, Callable[[Any], tuple[Any, DetectOptions]]]:
    """Per built-in plugin: the accelerator and fake tools serving its recorded fixtures."""

    def read(plugin: str, name: str) -> str:
        return (PLUGINS / plugin / "tests" / "fixtures" / name).read_text()

    def cpu(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_cpu import CpuAccelerator

        return CpuAccelerator(), tools.options()

    def cuda(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_cuda import CudaAccelerator

        tools.add("nvidia-smi", {"-q -x": read("cuda", "nvidia-smi-q.xml")})
        return CudaAccelerator(nvml=None), tools.options()

    def rocm(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_rocm import ROCM_SMI_ARGS, RocmAccelerator

        tools.add("rocm-smi", {" ".join(ROCM_SMI_ARGS): read("rocm", "amd-gpu-6.2.4-rocm-smi.json")})
        tools.add("rocminfo", read("rocm", "amd-gpu-6.2.4-rocminfo.txt"))
        return RocmAccelerator(), tools.options()

    def dtk(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_dtk import DtkAccelerator
        from gpustack_accelerator_rocm import ROCM_SMI_ARGS

        tools.add("rocm-smi", {" ".join(ROCM_SMI_ARGS): read("dtk", "hygon-gpu-24.04.3-rocm-smi.json")})
        tools.add("rocminfo", read("dtk", "hygon-gpu-24.04.3-rocminfo.txt"))
        return DtkAccelerator(), tools.options()

    def cann(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_cann import CannAccelerator

        capture = "atlas-800-9010-24.1.RC2"
        tools.add(
            "npu-smi",
            {
                "info": read("cann", f"{capture}-npu-smi-info.txt"),
                "info -m": read("cann", f"{capture}-npu-smi-info-m.txt"),
            },
        )
        return CannAccelerator(), tools.options()

    def corex(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_corex import QUERY, CorexAccelerator

        tools.add("ixsmi", {" ".join(QUERY): read("corex", "ixsmi-query-gpu.csv")})
        return CorexAccelerator(), tools.options()

    def musa(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_musa import MusaAccelerator

        tools.add("mthreads-gmi", {"-q": read("musa", "mthreads-gmi-q.txt")})
        return MusaAccelerator(), tools.options()

    def mlu(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_mlu import MluAccelerator

        tools.add(
            "cnmon", {"info -e -m -u -j": ""}, writes={"cnmon_info.json": read("mlu", "cnmon_info.json")}
        )
        return MluAccelerator(), tools.options()

    def metal(tools: Any) -> tuple[Any, DetectOptions]:
        from gpustack_accelerator_metal import MetalAccelerator

        tools.add(
            "system_profiler",
            {"SPDisplaysDataType -json": read("metal", "system_profiler-SPDisplaysDataType.json")},
        )
        tools.add("sysctl", {"-n hw.memsize": read("metal", "sysctl-n-hw.memsize.txt")})
        return MetalAccelerator(), tools.options()

    return {
        "cpu": cpu,
        "cuda (nvidia-smi path)": cuda,
        "rocm": rocm,
        "dtk": dtk,
        "cann": cann,
        "corex": corex,
        "musa": musa,
        "mlu": mlu,
        "metal": metal,
    }


def main(argv: list[str]) -> None:
    """Print a markdown table of detection latency (milliseconds)."""
    parser = argparse.ArgumentParser(prog="benchmarks.detection")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--fixtures", action="store_true", help="built-in plugins against recorded fixtures")
    args = parser.parse_args(argv)
    print("| what | median ms | p95 ms | min ms | runs | result |")
    print("|---|---|---|---|---|---|")
    rows = _fixtures(args.repeat) if args.fixtures else _real(args.repeat) + _nvml(args.repeat)
    for row in rows:
        print(row)
