"""Real Ray across two network namespaces, driven by the vLLM plugin's multi-node launch specs.

The head spec (rank 0: ``ray start --head`` then ``vllm serve ... --distributed-executor-backend
ray``) runs in one namespace, the worker spec (rank 1: ``ray start --address <head> --block``) in
the other, with the real ``ray`` from the test environment; ``vllm`` itself cannot be installed
here, so a stand-in (``fake_vllm.py``) takes its place: it waits until ``ray status`` shows both
nodes, records that status and its argv, and answers ``/health``. The argv is checked against
vLLM's recorded CLI flags. Ray processes are found by their temp directory and killed by pid
(never ``ray stop``, which stops every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
from netns_pair import entered, netns_pair, netns_unavailable
from server_helpers import free_port

from gpustack_core.testing.engine_requests import make_launch_request

HERE = Path(__file__).resolve().parent
RAY = shutil.which("ray", path=str(Path(sys.executable).parent))

pytestmark = pytest.mark.skipif(RAY is None, reason="ray is not installed in the test environment")


def _installation(root: Path) -> Path:
    """``<root>/bin/vllm`` (the stand-in) and ``<root>/bin/ray`` (the real one)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    vllm = bin_dir / "vllm"
    vllm.write_text(f"#!{sys.executable}\n" + (HERE / "fake_vllm.py").read_text())
    vllm.chmod(vllm.stat().st_mode | stat.S_IXUSR)
    assert RAY is not None
    (bin_dir / "ray").symlink_to(RAY)
    return vllm


def _ray_pids(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        with contextlib.suppress(psutil.Error):
            text = " ".join(proc.info["cmdline"] or ()) + json.dumps(proc.info["environ"] or {})
            if marker in text:
                found.append(proc.info["pid"])
    return found


def test_vllm_multi_node_specs_form_a_real_two_node_ray_cluster(tmp_path: Path) -> None:
    from gpustack_engine_vllm import VllmEngine
    from gpustack_engine_vllm._cli import RAY_START_FLAGS, VLLM_SERVE_FLAGS

    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    # short: Ray's unix sockets live under it (108-byte path limit)
    ray_tmp = Path(tempfile.mkdtemp(prefix="r15", dir="/tmp"))
    root = tmp_path / "vllm"
    executable = _installation(root)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    engine = VllmEngine()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with netns_pair() as pair:
            head_address = f"{pair.address_a}:{free_port()}"
            common = dict(executable=str(executable), version="0.7.3", vendor="nvidia", device_count=1)
            common |= dict(node_count=2, head_address=head_address, model_paths=(str(model),))
            port = free_port()
            head = engine.launch_spec(make_launch_request("vllm", node_rank=0, port=port, **common))
            worker = engine.launch_spec(
                make_launch_request("vllm", node_rank=1, host=pair.address_b, port=free_port(), **common)
            )
            # the commands match vLLM's and Ray's recorded CLI flags
            script = head.argv[2]
            ray_head, vllm_serve = script.split(" && exec ")
            for part, known in ((ray_head.split()[2:], RAY_START_FLAGS), (worker.argv[2:], RAY_START_FLAGS)):
                assert {a.split("=")[0] for a in part if a.startswith("-")} <= known
            serve_flags = {a for a in vllm_serve.split()[3:] if a.startswith("--")}
            assert serve_flags <= VLLM_SERVE_FLAGS
            assert "--distributed-executor-backend" in serve_flags
            assert head.env["RAY_ADDRESS"].endswith(head_address.rsplit(":", 1)[1])

            env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0"}
            for ns, spec, name in ((pair.a, head, "head"), (pair.b, worker, "worker")):
                with open(tmp_path / f"{name}.log", "wb") as log:
                    processes.append(
                        subprocess.Popen(
                            [*pair.exec_argv(ns), *spec.argv],
                            env={**env, **spec.env},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                if name == "head":
                    time.sleep(1)  # the worker retries its join anyway; this only saves a retry

            deadline = time.monotonic() + 240
            with entered(pair.a):
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                            break
                    for proc, name in zip(processes, ("head", "worker"), strict=True):
                        if proc.poll() is not None and name == "head":
                            pytest.fail(f"head exited: {(tmp_path / 'head.log').read_text()[-3000:]}")
                    if time.monotonic() > deadline:
                        logs = "".join(
                            (tmp_path / f"{n}.log").read_text()[-2000:] for n in ("head", "worker")
                        )
                        pytest.fail(f"the head never became ready:\n{logs}")
                    time.sleep(1)
            status = (root / "ray-status.txt").read_text()
            active = status.split("Pending:")[0]
            assert len(re.findall(r"^\s*1 node_", active, re.MULTILINE)) == 2, status
            assert re.search(r"/\d+(\.\d+)? CPU", status), status
            argv = json.loads((root / "vllm-argv.json").read_text())
            assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    finally:
        for proc in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # a Ray node drains for up to 30 s on SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid in _ray_pids(str(ray_tmp)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
