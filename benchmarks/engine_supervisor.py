"""Supervisor latencies: start -> ready, kill -9 -> restarted and ready, graceful stop.

Runs the fake engine (``gpustack_core.testing.fake_engine``, a Python HTTP server) and, when a
llama.cpp build is cached, ``llama-server`` with a tiny random GGUF.
Usage: ``python -m benchmarks engine_supervisor [-- --runs N]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from gpustack_core.supervisor import RestartPolicy, Supervisor
from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite, free_port
from gpustack_core.types import HttpProbe, LaunchSpec, ModelCategory

__all__ = ["main"]


def _fake_spec() -> LaunchSpec:
    port = free_port()
    argv = (sys.executable, "-m", "gpustack_core.testing.fake_engine", "--port", str(port))
    return LaunchSpec(argv=argv, port=port, served_model_name="fake", readiness=HttpProbe(path="/health"))


def _llama_spec(workdir: Path) -> LaunchSpec | None:
    try:
        from gpustack_engine_llama_cpp import LlamaCppEngine
    except ImportError:
        return None
    from gpustack_core.engines import default_engine_options
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    engine = LlamaCppEngine()
    installation = engine.locate(engine.default_version(), default_engine_options())
    if installation is None or installation.origin == "located":
        return None
    model = str(write_llama_gguf(workdir / "tiny.gguf", TinyLlamaSpec.tiny()))
    request = EngineConformanceSuite().make_request(
        installation, ModelCategory.LLM, (model,), DeviceSetup.cpu()
    )
    return engine.launch_spec(request)


async def _measure(make_spec: object, runs: int, workdir: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"start -> ready": [], "kill -9 -> ready": [], "stop (SIGTERM)": []}
    policy = RestartPolicy(initial_backoff_s=0.0, health_interval_s=1.0)
    async with Supervisor(workdir / "state", workdir / "logs", policy, poll_interval_s=0.05) as sup:
        for run in range(runs):
            spec = make_spec()  # type: ignore[operator]
            name = f"bench-{run}"
            begun = time.perf_counter()
            await sup.start(name, spec)
            await sup.wait_ready(name, timeout_s=120)
            results["start -> ready"].append(time.perf_counter() - begun)
            pid = sup.status(name).pid
            assert pid is not None
            begun = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(120):
                while not (sup.status(name).restarts == 1 and sup.status(name).state == "ready"):
                    await anyio.sleep(0.01)
            results["kill -9 -> ready"].append(time.perf_counter() - begun)
            begun = time.perf_counter()
            await sup.stop(name, grace_s=10)
            results["stop (SIGTERM)"].append(time.perf_counter() - begun)
    return results


def main(argv: list[str]) -> None:
    """Print a table of median and max latencies per engine and phase."""
    parser = argparse.ArgumentParser(prog="engine_supervisor")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        engines: list[tuple[str, object]] = [("fake engine (python http.server)", _fake_spec)]
        llama = _llama_spec(workdir)
        if llama is not None:
            engines.append(("llama-server, tiny GGUF", lambda: llama.model_copy(update={})))
        print(f"{'engine':36} {'phase':18} {'median s':>9} {'max s':>9} runs")
        for label, factory in engines:
            results = anyio.run(_measure, factory, args.runs, workdir / label.split()[0])
            for phase, values in results.items():
                print(
                    f"{label:36} {phase:18} {statistics.median(values):9.3f} {max(values):9.3f} {len(values)}"
                )
