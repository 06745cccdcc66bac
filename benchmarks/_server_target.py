"""The reference server as a gateway_throughput target: ``gpustack-core serve --gateway-workers N``.

A fresh SQLite database in a temporary data directory holds one worker (127.0.0.1, ready), one
deployment named ``bench-model`` with one instance reported running on the benchmark's fake
engine port, and one inference key. The server runs without an embedded worker
(``--no-worker``), with a heartbeat timeout long enough that the silent worker stays ready, and
``--no-limits`` (the other gateway targets enforce none either). Auth is the server's cached
key check and usage is metered into the database, as in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

__all__ = ["ServerTarget"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _prepare(data_dir: Path, engine_port: int, engine_pid: int, model: str) -> str:
    """Migrate the database, add the worker, deployment, running instance and a key; the key."""
    from gpustack_core.server.security import hash_secret, new_api_key
    from gpustack_core.server.store import Store, migrate
    from gpustack_core.server.store.database import make_engine
    from gpustack_core.server.store.records import InstanceState
    from gpustack_core.types import Deployment, ModelRef, WorkerInfo

    data_dir.mkdir(parents=True, mode=0o700)
    engine = make_engine(f"sqlite:///{data_dir / 'gpustack.db'}")
    migrate.upgrade(engine)
    store = Store(engine)
    worker = store.register_worker(WorkerInfo(name="bench-worker", address="127.0.0.1", engines=("fake",)))
    dep = store.create_deployment(
        Deployment(name=model, model=ModelRef(source="local", id=str(data_dir / "none.gguf")), engine="fake")
    )
    store.ensure_replicas(dep.id, 1)
    inst = store.list_instances(limit=10)[0][0]
    if not store.place(inst.id, inst.version, worker.id, {}):
        raise RuntimeError("could not place the benchmark instance")
    store.report(inst.id, worker.id, InstanceState.RUNNING, port=engine_port, pid=engine_pid)
    user = store.create_user("bench", "unused", "user")
    key_id, token = new_api_key()
    store.create_key(key_id, user.id, "bench", "key", hash_secret(token), ["inference"], None, None)
    engine.dispose()
    return token


class ServerTarget:
    """One ``serve --gateway-workers N`` process tree on a free port, ready to take requests."""

    def __init__(
        self, workers: int, engine_port: int, engine_pid: int, model: str, source: str | None = None
    ) -> None:
        """``source``: a ``src`` directory to run the server from instead of the installed package
        (another commit's ``git archive COMMIT src``, to compare two versions side by side)."""
        self.root = Path(tempfile.mkdtemp(prefix="gw-bench-server-"))
        self.key = _prepare(self.root / "data", engine_port, engine_pid, model)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "gpustack_core.cli",
            "serve",
            "--data-dir",
            str(self.root / "data"),
            "--port",
            str(self.port),
            "--no-worker",
            "--no-limits",
            "--heartbeat-timeout",
            "1000000000",
            "--gateway-workers",
            str(workers),
            "--log-level",
            "warning",
        ]
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)
        self._wait_ready(model)
        self.pids = [
            self.process.pid,
            *(p.pid for p in psutil.Process(self.process.pid).children(recursive=True)),
        ]

    def _wait_ready(self, model: str) -> None:
        deadline = time.monotonic() + 90
        headers = {"Authorization": f"Bearer {self.key}", "Connection": "close"}
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        ok = 0
        while ok < 20:  # on fresh connections: every process has its route
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server target did not start (exit {self.process.returncode})")
            try:
                r = httpx.post(f"{self.url}/v1/chat/completions", json=body, headers=headers, timeout=5)
                ok = ok + 1 if r.status_code == 200 else 0
            except httpx.HTTPError:
                ok = 0
            if ok == 0:
                time.sleep(0.2)

    def close(self) -> None:
        """Stop the server (it stops its gateway workers) and remove its data directory."""
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
