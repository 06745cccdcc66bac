"""Process helpers of the instance-group tests: start a worker process (``server_group_worker_main.py``),
start a server and two workers across two network namespaces, and stop every worker (and server)
process a test started, then every engine process they started, even one the test never saw."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal

import httpx
import psutil
from netns_pair import NetnsPair, entered
from server_helpers import Running, free_port

__all__ = ["alive", "group_across_namespaces", "kill_tree", "start_group_worker", "stop_all"]

HERE = Path(__file__).resolve().parent


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (gone ones are skipped)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        for child in [*proc.children(recursive=True), proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_all(processes: list[subprocess.Popen[bytes]], pids: list[int]) -> None:
    """SIGTERM ``processes`` (SIGKILL after 15 s), then kill ``pids`` and every descendant the
    processes had when this was called (a failed run must not leave processes behind)."""
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            pids += [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    for pid in pids:
        kill_tree(pid)


#: The worker's fake: ``test-gpu`` (the instance-group test plugins, one test device of the size)
#: or ``host-memory`` (the installed plugins, reporting the size as host memory, all free).
Fake = Literal["test-gpu", "host-memory"]


def start_group_worker(
    server: Running,
    name: str,
    data: Path,
    size: int,
    address: str = "127.0.0.1",
    fake: Fake = "test-gpu",
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start worker ``name`` of ``server`` (its URL and worker token) with data directory ``data``,
    logging to ``<data's parent>/<name>.log``; ``address``: the one it reports; ``prefix``: the argv
    prefix that runs it elsewhere (:meth:`NetnsPair.exec_argv`)."""
    token = (server.data_dir / "token").read_text().strip()
    argv = [sys.executable, str(HERE / "server_group_worker_main.py")]
    argv += ["--host-memory"] if fake == "host-memory" else []
    argv += [str(server.base_url), token, name, str(data), str(size), address]
    with open(data.parent / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([*prefix, *argv], stdout=log, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def group_across_namespaces(
    pair: NetnsPair, tmp_path: Path, size: int, fake: Fake, seen_pids: list[int]
) -> AsyncIterator[tuple[Running, dict[str, str]]]:
    """Two hosts as two network namespaces joined by veth: the server (``server_group_serve_main.py``,
    with the test plugins for ``test-gpu``, else the installed ones) and worker-a in ``pair.a``,
    worker-b in ``pair.b`` (:func:`start_group_worker` with ``size`` and ``fake``). Yields the server,
    logged in as the admin through a client in ``pair.a``, and worker name -> address; then stops
    the server, the workers and ``seen_pids`` (:func:`stop_all`). Logs go to ``tmp_path``."""
    port, data = free_port(), tmp_path / "server"
    serve = [sys.executable, str(HERE / "server_group_serve_main.py"), str(data), pair.address_a, str(port)]
    serve += [str(size)] if fake == "test-gpu" else []
    with open(tmp_path / "server.log", "wb") as log:
        processes = [
            subprocess.Popen([*pair.exec_argv(pair.a), *serve], stdout=log, stderr=subprocess.STDOUT)
        ]
    try:
        with entered(pair.a):
            base = f"http://{pair.address_a}:{port}"
            async with httpx.AsyncClient(base_url=base) as client:
                server = Running(None, client, data, base)
                await server.wait_healthy(timeout=60)
                await server.login_admin()
                addresses = {"worker-a": pair.address_a, "worker-b": pair.address_b}
                for name, ns in (("worker-a", pair.a), ("worker-b", pair.b)):
                    prefix = pair.exec_argv(ns)
                    worker = start_group_worker(
                        server, name, tmp_path / name, size, addresses[name], fake, prefix
                    )
                    processes.append(worker)
                yield server, addresses
    finally:
        stop_all(processes[::-1], seen_pids)
