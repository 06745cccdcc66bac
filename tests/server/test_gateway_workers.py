"""``serve --gateway-workers N``: gateway-only processes share the server's port (SO_REUSEPORT).

A real server process with two gateway processes and the fake OpenAI engine: requests on fresh
connections are answered by both processes (``/metrics`` labels each sample with its process),
every request is in the usage table exactly once, management API requests that land on the
gateway worker are proxied to the server, and Ctrl-C (SIGINT), SIGTERM or the server's death leaves no
process behind.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import Running, free_port

from gpustack_core.server.gateway_workers import make_run_dir, merge_metrics, remove_run_dir

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="SO_REUSEPORT is Linux's"),
]

HERE = Path(__file__).resolve().parent
REQUESTS = 120


def _start(
    data_dir: Path, port: int, workers: int, database_url: str | None = None
) -> subprocess.Popen[bytes]:
    script = str(HERE / "gateway_workers_serve_main.py")
    return subprocess.Popen(
        [sys.executable, script, str(data_dir), str(port), str(workers), database_url or ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_banner(process: subprocess.Popen[bytes]) -> None:
    """Block until the server says its gateway processes share the port (every worker is ready)."""
    assert process.stdout is not None
    for line in process.stdout:
        if b"gateway processes share the port" in line:
            process.stdout.close()
            return
    raise AssertionError(f"the server exited before its gateway workers were ready ({process.poll()})")


@pytest.fixture
def kill_leftovers() -> Iterator[list[int]]:
    """Pids the test started, killed at teardown if a failed assertion left them running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def _served_by_process(metrics_text: str) -> dict[str, float]:
    """Answered chat requests (status 200) by ``process`` label."""
    served: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "gpustack_gateway_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("status") == "200":
                process = sample.labels["process"]
                served[process] = served.get(process, 0.0) + sample.value
    return served


async def _connect(base: str, data_dir: Path, process: subprocess.Popen[bytes]) -> Running:
    with anyio.fail_after(60):
        await anyio.to_thread.run_sync(_wait_for_banner, process)
    client = httpx.AsyncClient(base_url=base, headers={"Connection": "close"})
    running = Running(None, client, data_dir, base)
    await running.wait_healthy(timeout=60)
    await running.login_admin()
    return running


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


async def _usage_requests(server: Running, key_id: str) -> int:
    rows = (await server.api("GET", "/usage", params={"key_id": key_id})).json()["items"]
    return sum(int(r["requests"]) for r in rows)


async def test_two_gateway_processes_share_the_port_meter_once_and_stop_with_the_server(
    tmp_path: Path, tiny_model: Path, kill_leftovers: list[int], database_url: str | None
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    main = _start(data_dir, port, 2, database_url)
    kill_leftovers.append(main.pid)
    server = await _connect(base, data_dir, main)
    try:
        children = psutil.Process(main.pid).children(recursive=True)
        workers = [p for p in children if "gpustack_core.server.gateway_worker" in " ".join(p.cmdline())]
        assert len(workers) == 1
        kill_leftovers.extend(p.pid for p in children)
        # every request goes over a fresh connection: management requests that land on the worker
        # are proxied to the server process (40 tries: all on one process has odds of 2e-12)
        proxied = 0
        for _ in range(40):
            r = await server.api("GET", "/deployments")
            assert r.status_code == 200, r.text
            proxied += r.headers.get("x-gpustack-core-proxied-by") == "gateway-1"
        assert 0 < proxied < 40
        # /v1 on every process: the console's session cookie stands for a bearer token (reads; a
        # write without the CSRF token is refused), and a body that does not arrive is 408
        cookie = {"Cookie": f"gpustack_session={server.admin_token}"}
        for _ in range(20):
            r = await server.client.get("/v1/models", headers=cookie)
            assert r.status_code == 200, r.text
            r = await server.client.post("/v1/chat/completions", json={"model": "x"}, headers=cookie)
            assert r.status_code == 403, r.text
        incomplete = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + server.admin_token.encode() + b"\r\ncontent-length: 100\r\n\r\n{"
        )
        heads: list[bytes] = []

        async def incomplete_body() -> None:
            answer = await anyio.to_thread.run_sync(_raw_exchange, port, incomplete)
            heads.append(answer.split(b"\r\n\r\n", 1)[0].lower())

        async with anyio.create_task_group() as group:
            for _ in range(16):  # fresh connections: all on one process has odds of 2e-5
                group.start_soon(incomplete_body)
        assert all(h.startswith(b"http/1.1 408") and b"connection: close" in h for h in heads), heads
        assert len(heads) == 16
        body = {"name": "chat", "model": f"local:{tiny_model}", "engine": "fake", "extra_args": ["--openai"]}
        assert (await server.api("POST", "/deployments", json=body)).status_code == 201
        r = await server.api("POST", "/api-keys", json={"name": "app", "scopes": ["inference"]})
        assert r.status_code == 201, r.text
        key, key_id = r.json()["key"], r.json()["record"]["id"]
        headers = {"Authorization": f"Bearer {key}"}
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "fake_tokens": 3}

        answered = 0

        async def routed_everywhere() -> bool:
            # both processes must have the route before the counted requests
            nonlocal answered
            for _ in range(8):
                r = await server.client.post("/v1/chat/completions", json=chat, headers=headers)
                if r.status_code != 200:
                    assert r.status_code in (404, 503), r.text  # not yet in that process's routes
                    return False
                answered += 1
            return True

        await server.wait_for(routed_everywhere, timeout=60)
        served_before = _served_by_process((await server.client.get("/metrics")).text)

        async def one() -> None:
            r = await server.client.post("/v1/chat/completions", json=chat, headers=headers)
            assert r.status_code == 200, r.text

        async with anyio.create_task_group() as group:
            for _ in range(REQUESTS):
                group.start_soon(one)
        served_after = _served_by_process((await server.client.get("/metrics")).text)
        delta = {p: served_after.get(p, 0.0) - served_before.get(p, 0.0) for p in served_after}
        assert set(delta) == {"server", "gateway-1"}
        assert sum(delta.values()) == REQUESTS
        assert all(v > 0 for v in delta.values()), delta

        answered += REQUESTS

        async def all_metered() -> int | None:
            total = await _usage_requests(server, key_id)
            assert total <= answered, "a request was counted twice"
            return total if total == answered else None

        await server.wait_for(all_metered, timeout=10)
        await anyio.sleep(1.5)  # three more flush intervals: nothing more is added
        assert await _usage_requests(server, key_id) == answered
    finally:
        await server.client.aclose()
    pids = [p.pid for p in children]
    main.send_signal(signal.SIGINT)  # Ctrl-C
    main.wait(30)

    def gone() -> bool:
        return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)

    with anyio.fail_after(20):
        while not gone():
            await anyio.sleep(0.1)


@pytest.mark.parametrize("stop", ["sigterm", "kill"])
async def test_gateway_workers_stop_when_the_server_is_terminated_or_killed(
    tmp_path: Path, kill_leftovers: list[int], stop: str
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    main = _start(data_dir, port, 3)
    kill_leftovers.append(main.pid)
    server = await _connect(f"http://127.0.0.1:{port}", data_dir, main)
    await server.client.aclose()
    workers = [
        p
        for p in psutil.Process(main.pid).children(recursive=True)
        if "gpustack_core.server.gateway_worker" in " ".join(p.cmdline())
    ]
    assert len(workers) == 2
    kill_leftovers.extend(p.pid for p in workers)
    if stop == "kill":
        main.kill()  # no shutdown of its own: the workers must notice
    else:
        main.terminate()  # uvicorn re-raises SIGTERM after its shutdown: the workers were told first
    main.wait(30)
    with anyio.fail_after(20):
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers):
            await anyio.sleep(0.1)
    left = list(Path(tempfile.gettempdir()).glob(f"gpustack-core-gw-{main.pid}-*"))
    if stop == "kill":
        assert left, "a killed server cannot remove its socket directory"
        remove_run_dir(make_run_dir())  # the next server's start removes a dead server's directory
        assert not any(path.exists() for path in left)
    else:
        assert not left, "a terminated server removes its socket directory"


def test_metrics_of_several_processes_are_merged_with_a_process_label() -> None:
    from prometheus_client import CollectorRegistry, Counter

    families: list[tuple[str, Any]] = []
    for process, value in (("server", 2), ("gateway-1", 5)):
        registry = CollectorRegistry()
        Counter("hits", "Hits.", ["model"], registry=registry).labels("m").inc(value)
        families.append((process, list(registry.collect())))
    text = merge_metrics(families).decode()
    assert text.count("# TYPE hits_total counter") == 1
    parsed = {
        s.labels["process"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "hits_total"
    }
    assert parsed == {"server": 2.0, "gateway-1": 5.0}


def test_more_than_one_gateway_process_is_refused_without_so_reuseport(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from gpustack_core.cli.app import build_app
    from gpustack_core.server.gateway_workers import GatewayWorkersUnsupported, reuse_port_socket

    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(GatewayWorkersUnsupported, match="SO_REUSEPORT"):
        reuse_port_socket("127.0.0.1", 0)
    result = CliRunner().invoke(build_app(), ["serve", "--data-dir", str(tmp_path), "--gateway-workers", "2"])
    assert result.exit_code == 2
    assert "--gateway-workers" in result.output
    assert "SO_REUSEPORT" in result.output
    assert not (tmp_path / "gpustack.db").exists()  # refused before anything started
