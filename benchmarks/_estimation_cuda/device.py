"""Runs on a CUDA machine: build llama-server with CUDA, measure its memory per model, write JSON.

Not a ``python -m benchmarks`` module: the device machine has no gpustack-core install. It needs
Python 3.10+, numpy, ``pynvml`` (nvidia-ml-py), cmake, ninja or make, nvcc, and what
``prepare.py`` put beside it: the trimmed llama.cpp source (``llama.cpp/``), the GGUF
generator (``gguf_models.py``, a copy of :mod:`gpustack_core.testing.gguf_models`), the plugin's
cmake arguments, the ``gguf`` wheel (``wheels/``) and ``baseline.cu``::

    python3 .device/device.py --out "$OUT"                      # build, baseline, the matrix (~6 min)
    python3 .device/device.py --out "$OUT" --runs 3: --no-baseline --deadline-s 540   # resume
    python3 .device/device.py --out "$OUT" --plan attribution   # the variants of the second call
    python3 .device/device.py --out /tmp/x --dry-run --llama-server PATH   # test it here (CPU)

Every run is one ``llama-server`` process started as gpustack-core's llama.cpp plugin starts it
(``--model --host --port --alias --ctx-size --n-gpu-layers 999 --metrics --no-webui``, plus
``-lv 4`` for the buffer-size lines and the run's extra flags), on a generated llama model.
Measured at three points (server ready; after one ~3k-token completion; after a second identical
one): the process's device memory from NVML and from ``nvidia-smi --query-compute-apps``, the
device's used and reserved memory, and the process's host memory from ``/proc/PID/status``. The log lines with
buffer sizes are kept for the local step (``benchmarks/estimation_cuda.py``), which parses them;
the full logs go to ``logs.tar.gz``. ``results.json`` is rewritten after every run, so a call
cut short still brings back what it measured.

The build is llama.cpp as the plugin builds it (``DEFAULT_CMAKE_ARGS`` of
``gpustack_engine_llama_cpp._build``) plus ``-DGGML_CUDA=ON``, one CUDA architecture and no web
UI download, with one change: the VMM memory pool of ggml-cuda prints a line when it grows (its
own commented-out printf, sent to stderr), so that the pool's share of the growth is visible.
``--no-pool-log`` builds it unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIB = 2**20

#: The llama.cpp plugin's cmake arguments, written by prepare.py (``DEFAULT_CMAKE_ARGS``).
PLUGIN_CMAKE_ARGS_FILE = HERE / "plugin-cmake-args.json"

#: Model shapes (Hugging Face config values of the named models); n_ctx_train is raised to
#: 131072 everywhere so that no tested context is above the training context.
SHAPES: dict[str, dict[str, Any]] = {
    "llama3.2-1b": dict(n_vocab=128256, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192,
                        tied_embeddings=True),
    "tinyllama-1.1b": dict(n_vocab=32000, n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632,
                           tied_embeddings=False),
    "llama3.2-3b": dict(n_vocab=128256, n_embd=3072, n_layer=28, n_head=24, n_head_kv=8, n_ff=8192,
                        tied_embeddings=True),
    "llama2-7b": dict(n_vocab=32000, n_embd=4096, n_layer=32, n_head=32, n_head_kv=32, n_ff=11008,
                      tied_embeddings=False),
    "llama3-8b": dict(n_vocab=128256, n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336,
                      tied_embeddings=False),
}  # fmt: skip
N_CTX_TRAIN = 131072
CONTEXTS = (4096, 16384, 32768)
#: Models in an order that covers every shape and every weight type within the first five.
MODEL_ORDER = (
    ("llama3-8b", "Q8_0"), ("tinyllama-1.1b", "F16"), ("llama3.2-1b", "Q4_K_M"), ("llama2-7b", "F16"),
    ("llama3.2-3b", "Q8_0"), ("llama3-8b", "Q4_K_M"), ("llama3.2-1b", "F16"), ("llama2-7b", "Q8_0"),
    ("tinyllama-1.1b", "Q4_K_M"), ("llama3.2-3b", "F16"), ("llama3-8b", "F16"), ("llama3.2-1b", "Q8_0"),
    ("llama2-7b", "Q4_K_M"), ("tinyllama-1.1b", "Q8_0"), ("llama3.2-3b", "Q4_K_M"),
)  # fmt: skip
#: Variants on one configuration, for attribution: (name, shape, type, ctx, extra flags, env, fill).
Variant = tuple[str, str, str, int, tuple[str, ...], dict[str, str], str]
VARIANTS: tuple[Variant, ...] = (
    ("np1", "llama3-8b", "Q8_0", 4096, ("--parallel", "1"), {}, "zeros"),
    ("fa-off", "llama3-8b", "Q8_0", 4096, ("--flash-attn", "off"), {}, "zeros"),
    ("tiled", "tinyllama-1.1b", "F16", 4096, (), {}, "tiled"),
    ("np1", "tinyllama-1.1b", "F16", 4096, ("--parallel", "1"), {}, "zeros"),
    ("tiled", "llama3.2-1b", "Q4_K_M", 4096, (), {}, "tiled"),
)
#: Run last: eager loading of every kernel image (cuBLAS's included) can take long.
LAST_VARIANTS: tuple[Variant, ...] = (
    ("eager", "llama3-8b", "Q8_0", 4096, (), {"CUDA_MODULE_LOADING": "EAGER"}, "zeros"),
)
#: ``--plan attribution``: what the constant and the growth consist of (a second call). A name
#: ending in ``-long`` sends a prompt of LONG_PROMPT_TOKENS instead of PROMPT_TOKENS.
ATTRIBUTION: tuple[Variant, ...] = (
    ("control", "llama3-8b", "Q8_0", 4096, (), {}, "zeros"),
    ("no-warmup", "llama3-8b", "Q8_0", 4096, ("--no-warmup",), {}, "zeros"),
    ("fit-off", "llama3-8b", "Q8_0", 4096, ("-fit", "off"), {}, "zeros"),
    ("no-graphs", "llama3-8b", "Q8_0", 4096, (), {"GGML_CUDA_DISABLE_GRAPHS": "1"}, "zeros"),
    # the recorded run passed --no-mmap, which llama.cpp 0c1e57098 refuses (it has --load-mode)
    ("no-mmap", "llama3-8b", "Q8_0", 4096, ("--load-mode", "none"), {}, "zeros"),
    ("ub2048", "llama3-8b", "Q8_0", 4096, ("-ub", "2048"), {}, "zeros"),
    ("kv-q8_0", "llama3-8b", "Q8_0", 32768, ("-ctk", "q8_0", "-ctv", "q8_0"), {}, "zeros"),
    ("default-long", "llama3-8b", "Q8_0", 32768, (), {}, "zeros"),
    ("kv-q8_0-long", "llama3-8b", "Q8_0", 32768, ("-ctk", "q8_0", "-ctv", "q8_0"), {}, "zeros"),
    ("no-warmup", "llama3-8b", "F16", 4096, ("--no-warmup",), {}, "zeros"),
    ("ub2048", "llama3-8b", "F16", 4096, ("-ub", "2048"), {}, "zeros"),
    ("default-long", "llama3-8b", "F16", 32768, (), {}, "zeros"),
)
LONG_PROMPT_TOKENS = 30000
#: llama.cpp prints its buffer sizes only from verbosity 4 on (logging only: memory is the same).
LOG_FLAGS = ("-lv", "4")
PROMPT_TOKENS = 3000
N_PREDICT = 16
#: Log lines the local step needs (buffer sizes, context parameters, devices, pool growth).
LOG_KEEP = re.compile(
    r"buffer size|llama_kv_cache|graph_reserve|sched_reserve|load_tensors|llama_context|"
    r"llama_params_fit|ggml_cuda_init|Device \d|VMM|pool grew|n_ctx|n_seq|n_batch|n_ubatch|"
    r"flash_attn|offload|CUDA|build:|system_info|warming up|model loaded|file type|file size|"
    r"n_parallel|kv_unified|memory|MiB|listening|fit|n_outputs|causal|load_mode|type +\w+: +\d+ tensors|"
    r"model params|model type|warm|prompt eval time|eval time|graphs reused"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


# ---- build ------------------------------------------------------------------------------------


def patch_pool_log(source: Path) -> bool:
    """Make ggml-cuda's VMM pool print its growth to stderr (its own commented-out printf)."""
    path = source / "ggml" / "src" / "ggml-cuda" / "ggml-cuda.cu"
    text = path.read_text()
    old = re.search(
        r'//printf\("cuda pool\[%d\]: size increased to %llu MB \(reserved %llu MB\)\\n",\s*'
        r"//\s*device, \(unsigned long long\) \(pool_size/1024/1024\),\s*"
        r"//\s*\(unsigned long long\) \(reserve_size/1024/1024\)\);",
        text,
    )
    if old is None:
        return "pool grew to" in text
    new = (
        'fprintf(stderr, "ggml_cuda_pool_vmm[%d]: pool grew to %llu bytes (+%llu bytes)\\n", device, '
        "(unsigned long long) pool_size, (unsigned long long) reserve_size);"
    )
    path.write_text(text[: old.start()] + new + text[old.end() :])
    return True


def build(source: Path, build_dir: Path, arch: str, jobs: int, pool_log: bool, out: Path) -> dict[str, Any]:
    """Configure and build the llama-server target; return what was done (cached when built)."""
    binary = build_dir / "bin" / "llama-server"
    facts_file = build_dir / "gpustack-build.json"
    if binary.exists() and facts_file.exists():
        facts = json.loads(facts_file.read_text())
        facts["reused"] = True
        return facts
    patched = patch_pool_log(source) if pool_log else False
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if not PLUGIN_CMAKE_ARGS_FILE.exists():
        raise SystemExit(f"{PLUGIN_CMAKE_ARGS_FILE} is missing: prepare the folder with prepare.py")
    args = [
        *json.loads(PLUGIN_CMAKE_ARGS_FILE.read_text()),
        "-DGGML_CUDA=ON",
        f"-DCMAKE_CUDA_ARCHITECTURES={arch}",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_BUILD_UI=OFF",
    ]
    build_log = out / "build.log"
    started = time.monotonic()
    with build_log.open("w") as fh:
        for cmd in (
            ["cmake", "-S", str(source), "-B", str(build_dir), *generator, *args],
            [
                "cmake",
                "--build",
                str(build_dir),
                "--config",
                "Release",
                "-j",
                str(jobs),
                "--target",
                "llama-server",
            ],
        ):
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            t0 = time.monotonic()
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
            fh.write(f"# exit {rc} after {time.monotonic() - t0:.1f} s\n")
            if rc != 0:
                fh.flush()
                raise SystemExit(f"build failed ({cmd[1]}); see build.log:\n{build_log.read_text()[-4000:]}")
    vendored = (
        json.loads((source / "VENDORED.json").read_text()) if (source / "VENDORED.json").exists() else {}
    )
    facts = {
        "cmake_args": args,
        "generator": generator[1] if generator else "default",
        "jobs": jobs,
        "seconds": round(time.monotonic() - started, 1),
        "pool_log_patch": patched,
        "vendored": vendored,
        "version": run([str(binary), "--version"]).stderr.strip()[-400:],
        "ldd": run(["ldd", str(binary)]).stdout.strip(),
        "binary_bytes": binary.stat().st_size,
    }
    facts_file.write_text(json.dumps(facts, indent=1))
    facts["reused"] = False
    return facts


# ---- NVML and /proc ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Gpu:
    """NVML readings of device 0 (with ``enabled`` False: none, for a dry run without a GPU)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def facts(self) -> dict[str, Any]:
        if not self.enabled:
            return {"name": "none (dry run)", "driver": "-", "cuda_driver_api": "-"}
        nv, h = self.nv, self.handle
        cc = nv.nvmlDeviceGetCudaComputeCapability(h)
        cuda = nv.nvmlSystemGetCudaDriverVersion_v2()
        facts: dict[str, Any] = {
            "name": _text(nv.nvmlDeviceGetName(h)),
            "driver": _text(nv.nvmlSystemGetDriverVersion()),
            "cuda_driver_api": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "compute_capability": f"{cc[0]}.{cc[1]}",
            "device_count": nv.nvmlDeviceGetCount(),
            "memory": self.memory(),
            "nvml_version": _text(nv.nvmlSystemGetNVMLVersion()),
        }
        for key, fn in (
            ("persistence_mode", "nvmlDeviceGetPersistenceMode"),
            ("mig_mode", "nvmlDeviceGetMigMode"),
        ):
            try:
                facts[key] = getattr(nv, fn)(h)
            except Exception as exc:
                facts[key] = f"n/a: {exc}"
        return facts

    def memory(self) -> dict[str, int]:
        if not self.enabled:
            return {}
        nv = self.nv
        try:
            m = nv.nvmlDeviceGetMemoryInfo(self.handle, version=nv.nvmlMemory_v2)
            return {"total": m.total, "reserved": m.reserved, "used": m.used, "free": m.free}
        except Exception:
            m = nv.nvmlDeviceGetMemoryInfo(self.handle)
            return {"total": m.total, "used": m.used, "free": m.free}

    def processes(self) -> dict[int, int | None]:
        if not self.enabled:
            return {}
        return {p.pid: p.usedGpuMemory for p in self.nv.nvmlDeviceGetComputeRunningProcesses(self.handle)}


def smi_processes() -> dict[int, int]:
    """``nvidia-smi --query-compute-apps``: pid -> used MiB."""
    res = run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    out: dict[int, int] = {}
    for line in res.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            out[int(parts[0])] = int(parts[1])
    return out


def proc_status(pid: int) -> dict[str, int]:
    """Memory fields of ``/proc/PID/status``, in bytes."""
    keys = (
        "VmRSS",
        "VmHWM",
        "RssAnon",
        "RssFile",
        "RssShmem",
        "VmLck",
        "VmPin",
        "VmSize",
        "VmData",
        "VmSwap",
    )
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in keys:
                out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def snapshot(gpu: Gpu, pid: int) -> dict[str, Any]:
    nvml = gpu.processes()
    smi = smi_processes() if gpu.enabled else {}
    return {
        "t": round(time.monotonic(), 3),
        "nvml_process_bytes": nvml.get(pid),
        "smi_process_mib": smi.get(pid),
        "other_processes": {str(k): v for k, v in nvml.items() if k != pid},
        "device": gpu.memory(),
        "host": proc_status(pid),
    }


# ---- one llama-server run ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 300.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:500]


def prompt_ids(n_vocab: int, n_tokens: int) -> list[int]:
    """``n_tokens`` deterministic ordinary-token ids (no control or byte tokens)."""
    first = 3 + 256 + 1
    return [first + (i * 7919) % (n_vocab - first) for i in range(n_tokens)]


def serve_and_measure(
    binary: Path, model: Path, ctx: int, extra: tuple[str, ...], env_extra: dict[str, str], n_vocab: int,
    gpu: Gpu, log_path: Path, prompt_tokens: int = PROMPT_TOKENS,
) -> dict[str, Any]:  # fmt: skip
    port = free_port()
    argv = [
        str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--alias", "m",
        "--ctx-size", str(ctx), "--n-gpu-layers", "999", "--metrics", "--no-webui", *LOG_FLAGS, *extra,
    ]  # fmt: skip
    env = {**os.environ, **env_extra}
    result: dict[str, Any] = {"argv": argv[1:], "env": env_extra, "points": {}}
    result["device_before"] = gpu.memory()
    t0 = time.monotonic()
    with log_path.open("w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {proc.returncode}")
                if time.monotonic() - t0 > 150:
                    raise RuntimeError("llama-server not ready after 150 s")
                try:
                    status, _ = http_json(f"{base}/health", timeout=2)
                    if status == 200:
                        break
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.1)
            result["ready_s"] = round(time.monotonic() - t0, 2)
            time.sleep(0.2)
            result["points"]["after_load"] = snapshot(gpu, proc.pid)
            body = {
                "prompt": prompt_ids(n_vocab, prompt_tokens), "n_predict": N_PREDICT, "temperature": 0.0,
                "top_k": 1, "seed": 42, "ignore_eos": True, "cache_prompt": False,
            }  # fmt: skip
            for point in ("after_request", "after_request2"):
                t1 = time.monotonic()
                status, reply = http_json(f"{base}/completion", body, timeout=120)
                if status != 200:
                    raise RuntimeError(f"completion answered {status}: {reply}")
                timings = reply.get("timings", {}) if isinstance(reply, dict) else {}
                time.sleep(0.2)
                snap = snapshot(gpu, proc.pid)
                snap["request_s"] = round(time.monotonic() - t1, 3)
                snap["timings"] = {
                    k: timings.get(k) for k in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms")
                }
                result["points"][point] = snap
            status, props = http_json(f"{base}/props")
            if status == 200 and isinstance(props, dict):
                settings = props.get("default_generation_settings", {})
                result["props"] = {"total_slots": props.get("total_slots"), "n_ctx": settings.get("n_ctx")}
            result["ok"] = True
        except Exception as exc:
            result["ok"] = False
            result["error"] = str(exc)
        finally:
            result["final_host"] = proc_status(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            result["exit_code"] = proc.returncode
    for _ in range(50):  # the driver frees the context shortly after exit
        if not gpu.processes():
            break
        time.sleep(0.1)
    result["device_after_exit"] = gpu.memory()
    text = log_path.read_text(errors="replace")
    result["log_lines"] = [ln for ln in text.splitlines() if LOG_KEEP.search(ln)][:400]
    if not result.get("ok"):
        result["log_tail"] = text[-3000:]
    return result


# ---- the baseline program ----------------------------------------------------------------------


def baseline(gpu: Gpu) -> dict[str, Any]:
    """Compile and run baseline.cu step by step, with lazy and with eager module loading."""
    exe = Path("/tmp/gpustack-baseline")
    nvcc = shutil.which("nvcc") or "nvcc"
    stubs = Path(nvcc).resolve().parent.parent / "lib64" / "stubs"
    found: dict[str, Any] = {"nvcc": run([nvcc, "--version"]).stdout.strip()}
    base_cmd = [nvcc, "-O2", "-arch=sm_90", "-o", str(exe), str(HERE / "baseline.cu"), "-lcublas"]
    for cmd in ([*base_cmd, f"-L{stubs}", "-lcuda"], [*base_cmd, "-DNO_VMM"]):
        res = run(cmd)
        found["compile"] = " ".join(cmd)
        if res.returncode == 0:
            break
        found.setdefault("compile_errors", []).append(res.stderr[-2000:])
    else:
        return found
    for loading in ("LAZY", "EAGER"):
        env = {**os.environ, "CUDA_MODULE_LOADING": loading}
        proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdin is not None
        assert proc.stdout is not None
        steps: list[dict[str, Any]] = []
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        for line in proc.stdout:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                item = {"text": line.strip()}
            if "step" in item:
                item["nvml_process_bytes"] = gpu.processes().get(proc.pid)
                item["device"] = gpu.memory()
                item["host"] = proc_status(proc.pid)
                proc.stdin.write("\n")
                proc.stdin.flush()
            steps.append(item)
        proc.wait()
        watchdog.cancel()
        found[loading.lower()] = {"exit": proc.returncode, "steps": steps}
    return found


# ---- main ---------------------------------------------------------------------------------------


def load_generator() -> Any:
    site = Path("/tmp/gpustack-site")
    wheels = sorted((HERE / "wheels").glob("*.whl"))
    if wheels and not (site / "gguf").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--target", str(site), *map(str, wheels)],
            check=True,
        )  # fmt: skip
    sys.path.insert(0, str(site))
    spec = importlib.util.spec_from_file_location("gguf_models", HERE / "gguf_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gguf_models"] = module
    spec.loader.exec_module(module)
    return module


def plan(name: str = "matrix") -> list[dict[str, Any]]:
    """The runs of plan ``name`` in order.

    ``matrix``: every model at every context, the variants after its first five models, eager
    loading last. ``attribution``: :data:`ATTRIBUTION`.
    """
    if name == "attribution":
        return [_variant(v) for v in ATTRIBUTION]
    runs: list[dict[str, Any]] = []
    for i, (shape, wtype) in enumerate(MODEL_ORDER):
        for ctx in CONTEXTS:
            runs.append(_variant(("default", shape, wtype, ctx, (), {}, "zeros")))
        if i == 4:
            runs += [_variant(v) for v in VARIANTS]
    return runs + [_variant(v) for v in LAST_VARIANTS]


def _variant(v: Variant) -> dict[str, Any]:
    name, shape, wtype, ctx, extra, env, fill = v
    return {
        "variant": name, "shape": shape, "weight_type": wtype, "ctx": ctx, "extra": list(extra), "env": env,
        "fill": fill, "prompt_tokens": LONG_PROMPT_TOKENS if name.endswith("-long") else PROMPT_TOKENS,
    }  # fmt: skip


def write_results(out: Path, results: dict[str, Any], logs_dir: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / "results.json")
    with tarfile.open(out / "logs.tar.gz.tmp", "w:gz") as tar:
        tar.add(logs_dir, arcname="logs")
    os.replace(out / "logs.tar.gz.tmp", out / "logs.tar.gz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--source", type=Path, default=HERE / "llama.cpp")
    ap.add_argument("--build-dir", type=Path, default=Path("/tmp/gpustack-llama-build"))
    ap.add_argument("--models-dir", type=Path, default=Path("/tmp/gpustack-models"))
    ap.add_argument("--arch", default="90-real", help="CMAKE_CUDA_ARCHITECTURES")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 4)
    ap.add_argument("--no-pool-log", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--plan", choices=("matrix", "attribution"), default="matrix")
    ap.add_argument("--runs", default=":", help="slice of the run plan, e.g. 0:3 or 12:")
    ap.add_argument("--deadline-s", type=float, default=560.0, help="start no run after this many seconds")
    ap.add_argument("--list", action="store_true", help="print the run plan and exit")
    ap.add_argument("--llama-server", type=Path, help="use this binary instead of building one")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU: no NVML, no baseline (with --llama-server, e.g. a CPU build, to test the script)",
    )
    args = ap.parse_args()
    started = time.monotonic()
    runs = plan(args.plan)
    lo, _, hi = args.runs.partition(":")
    chosen = list(enumerate(runs))[int(lo) if lo else 0 : int(hi) if hi else len(runs)]
    if args.list:
        for i, r in chosen:
            print(i, r)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    logs_dir = Path("/tmp/gpustack-logs")
    logs_dir.mkdir(exist_ok=True)
    gpu = Gpu(enabled=not args.dry_run)
    shapes = SHAPES
    if args.dry_run:  # the same vocabularies on 2 small blocks, so that a CPU build answers quickly
        shapes = {k: {**v, "n_embd": 256, "n_layer": 2, "n_head": 4, "n_head_kv": 2, "n_ff": 768}
                  for k, v in SHAPES.items()}  # fmt: skip
    results: dict[str, Any] = {
        "schema": 1,
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {
            "hostname": socket.gethostname(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "mem_total_kib": int(Path("/proc/meminfo").read_text().split()[1]),
        },
        "gpu": gpu.facts(),
        "nvidia_smi": run(["nvidia-smi"]).stdout if gpu.enabled else "",
        "plan": args.plan,
        "prompt_tokens": PROMPT_TOKENS,
        "n_predict": N_PREDICT,
        "n_ctx_train": N_CTX_TRAIN,
        "shapes": shapes,
        "runs": [],
    }
    facts = results["gpu"]
    log(f"GPU: {facts['name']}, driver {facts['driver']}, CUDA {facts['cuda_driver_api']}")
    if args.llama_server:
        binary = args.llama_server
        results["build"] = {
            "binary": str(binary),
            "version": run([str(binary), "--version"]).stderr.strip()[-400:],
        }
    else:
        results["build"] = build(
            args.source, args.build_dir, args.arch, args.jobs, not args.no_pool_log, args.out
        )
        log(f"build: {results['build'].get('seconds')} s (reused: {results['build']['reused']})")
        binary = args.build_dir / "bin" / "llama-server"
    if not args.no_baseline and gpu.enabled:
        results["baseline"] = baseline(gpu)
        for loading in ("lazy", "eager"):
            steps = results["baseline"].get(loading, {}).get("steps", [])
            shown = [
                f"{st['step']}={(st.get('nvml_process_bytes') or 0) / MIB:.0f}"
                for st in steps
                if "step" in st
            ]
            log(f"baseline {loading} (process MiB): {' '.join(shown)}")
    write_results(args.out, results, logs_dir)
    if args.build_only:
        return
    gen = load_generator()
    models: dict[tuple[str, str, str], Path] = {}
    gen_s = 0.0
    for index, r in chosen:
        if time.monotonic() - started > args.deadline_s:
            log(f"deadline reached: runs from {index} not started")
            results["stopped_before_run"] = index
            break
        key = (r["shape"], r["weight_type"], r["fill"])
        if key not in models:
            for path in models.values():
                path.unlink(missing_ok=True)
            models.clear()
            label = f"{r['shape']}-{r['weight_type']}"
            spec = gen.TinyLlamaSpec(
                **shapes[r["shape"]], n_ctx_train=N_CTX_TRAIN, weight_type=r["weight_type"], name=label
            )
            t0 = time.monotonic()
            path = gen.write_llama_gguf(args.models_dir / f"{label}-{r['fill']}.gguf", spec, fill=r["fill"])
            models[key] = path
            gen_s = round(time.monotonic() - t0, 2)
            log(f"wrote {path.name}: {path.stat().st_size / 2**30:.2f} GiB in {gen_s} s")
        else:
            gen_s = 0.0
        name = f"{index:02d}-{r['variant']}-{r['shape']}-{r['weight_type']}-c{r['ctx']}"
        n_vocab = shapes[r["shape"]]["n_vocab"]
        measured = serve_and_measure(
            binary,
            models[key],
            r["ctx"],
            tuple(r["extra"]),
            r["env"],
            n_vocab,
            gpu,
            logs_dir / f"{name}.log",
            r["prompt_tokens"],
        )
        entry = {"index": index, "name": name, **r, "model_file_bytes": models[key].stat().st_size,
                 "generator_s": gen_s, **measured}  # fmt: skip
        results["runs"].append(entry)
        pts = measured["points"]

        def mib(point: str, pts: dict[str, Any] = pts) -> str:
            v = pts.get(point, {}).get("nvml_process_bytes")
            return f"{v / MIB:.0f}" if v else "-"

        log(f"{name}: ok={measured.get('ok')} ready {measured.get('ready_s')} s; process MiB "
            f"load {mib('after_load')} req {mib('after_request')} req2 {mib('after_request2')}; "
            f"RSS {pts.get('after_request', {}).get('host', {}).get('VmRSS', 0) / MIB:.0f} MiB")  # fmt: skip
        write_results(args.out, results, logs_dir)
    for path in models.values():
        path.unlink(missing_ok=True)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write_results(args.out, results, logs_dir)
    log(f"done in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
