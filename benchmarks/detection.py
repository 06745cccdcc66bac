"""Detection latency per accelerator plugin.

``python -m benchmarks detection [-- --repeat N] [-- --fixtures]``

* default: every installed accelerator plugin against this machine's real tools and drivers;
* ``--fixtures``: every built-in plugin against the first recording its ``conformance.toml``
  declares, served by fake tools on a private ``PATH`` (what CI can measure: process start-up of
  the tool + parsing);
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
    """Every installed built-in plugin on the first recording its conformance manifest declares."""
    from gpustack_accelerator_cuda import CudaAccelerator

    from gpustack_core.testing import ConformanceManifest, FakeTools

    rows = []
    for accelerator in PluginHost().accelerators():
        name = accelerator.name
        if name == "cuda":
            accelerator, name = CudaAccelerator(nvml=None), "cuda (nvidia-smi path)"
        manifest = PLUGINS / accelerator.name / "tests" / "fixtures" / "conformance.toml"
        with tempfile.TemporaryDirectory() as tmp:
            if manifest.exists():
                recording = ConformanceManifest.load(manifest).recordings[0]
                tools, name = recording.fake_tools(Path(tmp) / "bin"), f"{name} ({recording.id})"
            else:
                tools = FakeTools(Path(tmp) / "bin")  # the CPU plugin reads the machine, not tools
            options = tools.options()
            samples, outcome = _time(lambda a=accelerator, o=options: a.detect(o), repeat)
        rows.append(_row(f"{name} (fixtures, fake tools)", samples, outcome))
    return rows


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
