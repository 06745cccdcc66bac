"""Real llama.cpp over RPC: a tiny GGUF split over the CPUs of two workers.

Each worker reports a host memory size (``server_group_worker_main.py --host-memory``) that holds
the head's share of the model but not all of it, so the scheduler must place it over both: the
subordinate starts ``ggml-rpc-server``, the head ``llama-server --rpc <subordinate>
--n-gpu-layers K``, which keeps the first layers on its own CPU and puts the last K on the RPC
server (its log shows a model buffer on the ``RPC`` device). The model answers through the
gateway with the official ``openai`` client; killing the subordinate's ``ggml-rpc-server``
restarts the whole group, which answers again; deleting the deployment stops every process.

Two variants: two network namespaces joined by veth (the server and worker-a in one, worker-b in
the other; skipped, with the reason, where namespaces cannot be made) and loopback (both workers
on this host, distinct ports). The native llama.cpp build comes from the
``llama_cpp_native_installation`` fixture (cached, seeded or built; see tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest
from group_processes import alive, group_across_namespaces, start_group_worker, stop_all
from netns_pair import netns_pair, netns_unavailable
from server_helpers import Running, fast_config, serve_http

from gpustack_core.plugins import PluginHost
from gpustack_core.testing.sampling import DETERMINISTIC_SAMPLING
from gpustack_core.types import EngineInstallation, ModelRef

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: The context the deployment asks for (the estimate that sizes each worker's share uses it too).
CONTEXT = 512
#: llama-server's line for the weights it put on an RPC server, e.g.
#: ``load_tensors: RPC0[127.0.0.1:50052] model buffer size =     0.31 MiB``.
RPC_BUFFER = re.compile(r"RPC\d*\[(?P<endpoint>[^\]]+)\] model buffer size =\s*(?P<mib>[\d.]+) MiB")
CPU_BUFFER = re.compile(r"CPU(?:_Mapped)? model buffer size =\s*(?P<mib>[\d.]+) MiB")


@pytest.fixture
def rpc_build(llama_cpp_native_installation: EngineInstallation) -> EngineInstallation:
    """The native build, which must have its RPC server (built with -DGGML_RPC=ON)."""
    rpc_server = Path(llama_cpp_native_installation.executable).parent / "ggml-rpc-server"
    assert rpc_server.is_file(), (
        f"{rpc_server} is missing: the cached native build predates RPC; remove "
        f"{Path(llama_cpp_native_installation.executable).parent.parent} and build it again"
    )
    return llama_cpp_native_installation


@pytest.fixture
def host_bytes(tiny_model: Path) -> int:
    """A host memory size that holds the head's share of the tiny model over two workers' CPUs
    but not the whole model (both from the estimator, as the server computes them)."""
    from gpustack_core.estimate import EstimateOptions, estimate_model
    from gpustack_core.server.planning import with_multi_worker_claims
    from gpustack_core.types import SourceOptions

    source = PluginHost(environ={}).model_source("local")
    ref = ModelRef(source="local", id=str(tiny_model))
    metadata = source.resolve(ref, SourceOptions(cache_dir=str(tiny_model.parent)))
    options = EstimateOptions(ctx_size=CONTEXT)
    base = estimate_model(metadata, options, local_path=str(tiny_model))
    whole = next(c for c in base.claims if c.strategy == "cpu_only").host_memory_bytes
    split = next(
        c
        for c in with_multi_worker_claims(base, metadata, options, str(tiny_model)).claims
        if c.spans_worker_hosts and len(c.worker_host_memory_bytes) == 2
    )
    head, sub = split.worker_host_memory_bytes
    size = (max(head, sub) + whole) // 2
    assert max(head, sub) <= size < whole, "the split must need less per worker than the whole model"
    return size


async def _instance(server: Running, name: str) -> dict[str, Any] | None:
    items = (await server.api("GET", "/instances", params={"deployment": name})).json()["items"]
    return items[0] if items else None


async def _chat(server: Running, key: str) -> None:
    """A chat completion through the gateway: exactly ``max_tokens`` tokens come back."""
    async with openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key=key, max_retries=0, timeout=120
    ) as client:

        async def answered() -> Any:
            try:
                return await client.chat.completions.create(
                    model="split",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=6,
                    extra_body=DETERMINISTIC_SAMPLING,
                )
            except openai.APIStatusError as exc:  # the gateway's routes follow the database
                if exc.status_code != 503:
                    raise
                return None

        reply = await server.wait_for(answered, timeout=30)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 6  # ignore_eos: never fewer
    assert reply.usage.prompt_tokens > 0
    assert reply.choices[0].finish_reason == "length"


async def _rpc_group_scenario(
    server: Running, tiny_model: Path, build: EngineInstallation, addresses: dict[str, str], seen: list[int]
) -> None:
    """Both workers registered: deploy, check the split and its log, chat, kill the RPC server,
    see the whole group restart and answer again, delete. ``addresses``: worker name -> address."""

    async def both_ready() -> bool:
        r = await server.api("GET", "/workers", params={"state": "ready"})
        return {w["name"] for w in r.json()["items"]} == set(addresses)

    await server.wait_for(both_ready, timeout=60)
    body = {
        "name": "split",
        "model": f"local:{tiny_model}",
        "engine": "llama.cpp",
        "engine_version": build.version,
        "context_length": CONTEXT,
        "allow_multi_worker": True,
        # llama-server logs where its buffers went at verbosity 4 (trace); ggml-rpc-server ignores it
        "env": {"LLAMA_ARG_LOG_VERBOSITY": "4"},
    }
    r = await server.api("POST", "/deployments", json=body)
    assert r.status_code == 201, r.text

    async def running(error_expected: bool = False) -> dict[str, Any] | None:
        inst = await _instance(server, "split")
        if inst is not None and inst["state"] == "error" and not error_expected:
            pytest.fail(f"the group failed: {inst['message']}")
        ok = inst is not None and inst["state"] == "running" and inst["parts"]
        return inst if ok and all(p["state"] == "running" for p in inst["parts"]) else None

    inst = await server.wait_for(running, timeout=120)
    claim = inst["placement"]["claim"]
    assert (claim["strategy"], inst["placement"]["devices"]) == ("multi_worker", [])
    assert len(claim["worker_host_memory_bytes"]) == 2
    [part] = inst["parts"]
    assert {inst["worker"], part["worker"]} == set(addresses)
    assert (part["rank"], part["address"]) == (1, addresses[part["worker"]])
    seen += [inst["pid"], part["pid"]]
    head_argv, part_argv = psutil.Process(inst["pid"]).cmdline(), psutil.Process(part["pid"]).cmdline()
    bin_dir = Path(build.executable).parent
    assert part_argv[0] == str(bin_dir / "ggml-rpc-server")
    assert part_argv[part_argv.index("--port") + 1] == str(part["port"])
    assert head_argv[0] == build.executable
    endpoint = f"{part['address']}:{part['port']}"
    assert head_argv[head_argv.index("--rpc") + 1] == endpoint
    layers = int(head_argv[head_argv.index("--n-gpu-layers") + 1])
    assert layers == claim["offloaded_layers"]
    assert 0 < layers < claim["total_layers"]  # some layers on each side

    # the head's own log: weights on the RPC server and on its CPU
    async def head_log() -> str | None:
        r = await server.api("GET", f"/instances/{inst['id']}/logs", params={"rank": 0, "tail": 400})
        assert r.status_code == 200, r.text
        return r.text if RPC_BUFFER.search(r.text) and CPU_BUFFER.search(r.text) else None

    log = await server.wait_for(head_log, timeout=30)
    on_rpc = list(RPC_BUFFER.finditer(log))
    assert {m["endpoint"] for m in on_rpc} == {endpoint}
    assert all(float(m["mib"]) > 0 for m in on_rpc)
    assert float(CPU_BUFFER.search(log)["mib"]) > 0  # type: ignore[index]

    # ... and the RPC server's log, through the server from the subordinate worker
    async def part_log() -> bool:
        r = await server.api("GET", f"/instances/{inst['id']}/logs", params={"rank": 1, "tail": 50})
        assert r.status_code == 200, r.text
        return "Accepted client connection" in r.text

    await server.wait_for(part_log, timeout=30)

    r = await server.api("POST", "/api-keys", json={"name": "app", "scopes": ["inference"]})
    key = r.json()["key"]
    await _chat(server, key)

    # the subordinate's RPC server dies: the whole group restarts (new head, new part)
    os.kill(part["pid"], signal.SIGKILL)

    async def restarted() -> dict[str, Any] | None:
        now = await running(error_expected=True)  # the part's exit fails the group, then it restarts
        return now if now is not None and now["restarts"] >= 1 else None

    again = await server.wait_for(restarted, timeout=120)
    assert again["pid"] != inst["pid"]
    assert again["parts"][0]["pid"] != part["pid"]
    assert not alive(inst["pid"])
    seen += [again["pid"], again["parts"][0]["pid"]]
    new_argv, new_part = psutil.Process(again["pid"]).cmdline(), again["parts"][0]
    assert new_argv[new_argv.index("--rpc") + 1] == f"{new_part['address']}:{new_part['port']}"
    await _chat(server, key)

    assert (await server.api("DELETE", "/deployments/split")).status_code == 202

    async def gone() -> bool:
        return (await server.api("GET", "/deployments/split")).status_code == 404

    await server.wait_for(gone, timeout=60)

    async def all_stopped() -> bool:
        return not any(alive(pid) for pid in seen)

    await server.wait_for(all_stopped, timeout=30)


@pytest.fixture
async def loopback_server(tmp_path: Path) -> AsyncIterator[Running]:
    """The server over HTTP on loopback, without an embedded worker (both workers are processes)."""
    config = fast_config(tmp_path / "server", embedded_worker=False, heartbeat_timeout_s=15.0)
    async for running in serve_http(config, host=PluginHost(environ={})):
        yield running


async def test_llama_cpp_over_rpc_on_two_workers_of_one_host(
    rpc_build: EngineInstallation, loopback_server: Running, tmp_path: Path, tiny_model: Path, host_bytes: int
) -> None:
    """Loopback variant: both workers on this host, distinct ports."""
    server = loopback_server
    names = ("worker-a", "worker-b")
    processes: list[subprocess.Popen[bytes]] = []
    seen: list[int] = []
    try:
        for name in names:
            worker = start_group_worker(server, name, tmp_path / name, host_bytes, fake="host-memory")
            processes.append(worker)
        await _rpc_group_scenario(server, tiny_model, rpc_build, dict.fromkeys(names, "127.0.0.1"), seen)
    finally:
        stop_all(processes, seen)


async def test_llama_cpp_over_rpc_across_two_network_namespaces(
    rpc_build: EngineInstallation, tmp_path: Path, tiny_model: Path, host_bytes: int
) -> None:
    """Two hosts as two network namespaces joined by veth: the server and worker-a in one,
    worker-b in the other; the head's llama-server reaches worker-b's RPC server across the link."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"{reason}; the loopback variant runs llama.cpp over RPC on one host")
    seen: list[int] = []
    with netns_pair() as pair:
        group = group_across_namespaces(pair, tmp_path, host_bytes, "host-memory", seen)
        async with group as (server, addresses):
            await _rpc_group_scenario(server, tiny_model, rpc_build, addresses, seen)
