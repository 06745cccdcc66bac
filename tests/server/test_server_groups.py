"""Instance groups: a placement across workers is one group whose every worker starts its part.

Store level (every database): placing creates the parts, each worker's assignments carry its
rank, a failed part fails the instance, a retry or a lost subordinate worker restarts the whole
group, deleting the instance removes every part.

End to end (real server over HTTP, two real worker processes on loopback, distinct ports): each
worker reports one test device too small for the tiny GGUF, so the scheduler must split it over
both; the subordinate starts a TCP stand-in of ``rpc-server`` (the real one, on CPUs, runs in
``test_server_llama_rpc.py``), the head starts only once it is ready, with
``--rpc 127.0.0.1:<its port>``; the model answers through the gateway with the ``openai`` client;
killing the stand-in restarts the whole group; deleting the deployment stops every process on
both workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from group_processes import alive, group_across_namespaces, start_group_worker, stop_all
from netns_pair import netns_pair, netns_unavailable
from server_group_plugins import USED_BYTES, make_group_host
from server_helpers import Running, fast_config, free_port, serve_http

from gpustack_core.plugins import PluginHost
from gpustack_core.server.api.workers import _groups
from gpustack_core.server.store import Store
from gpustack_core.server.store.records import InstanceState
from gpustack_core.types import Deployment, Device, ModelRef, WorkerInfo

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------- store


def _placed_group(store: Store) -> tuple[str, str, str, str]:
    spec = Deployment(name="g", model=ModelRef(source="local", id="/m.gguf"), engine="fake", replicas=1)
    dep_id = store.create_deployment(spec).id
    store.ensure_replicas(dep_id, 1)
    head = store.register_worker(WorkerInfo(name="head")).id
    sub = store.register_worker(WorkerInfo(name="sub")).id
    inst = store.list_instances(deployment_id=dep_id)[0][0]
    placement = {"worker": "head", "subordinate_workers": ["sub"], "deployment": "g", "replica": 0}
    assert store.place(inst.id, inst.version, head, placement)
    return dep_id, inst.id, head, sub


def test_the_instance_groups_migration_goes_down_and_up_again(store: Store) -> None:
    """Down to the revision below ours, and up again, with rows in the tables."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.script import ScriptDirectory

    from gpustack_core.server.store import migrate

    _placed_group(store)  # with rows in both tables
    below = ScriptDirectory.from_config(migrate._config()).get_revision("0004_instance_groups").down_revision
    assert isinstance(below, str)
    with store.engine.begin() as c:
        command.downgrade(migrate._config(c), below)
    inspector = sa.inspect(store.engine)
    assert "instance_parts" not in inspector.get_table_names()
    assert "head_address" not in {col["name"] for col in inspector.get_columns("instances")}
    migrate.upgrade(store.engine)
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert store.list_instances()[0][0].parts == ()  # the group's parts went with the table


def test_placing_a_group_hands_every_worker_its_part(store: Store) -> None:
    _, iid, head, sub = _placed_group(store)
    [(h, _, head_rank)] = store.worker_assignments(head)
    [(s, _, sub_rank)] = store.worker_assignments(sub)
    assert (h.id, head_rank, s.id, sub_rank) == (iid, 0, iid, 1)
    assert [(p.rank, p.worker, p.state) for p in h.parts] == [(1, "sub", InstanceState.SCHEDULED)]
    assert h.node_count == 2

    assert store.report_part(iid, 1, sub, InstanceState.RUNNING, address="10.0.0.2", port=50052, pid=7)
    assert not store.report_part(iid, 1, head, InstanceState.RUNNING)  # not that worker's part
    assert not store.report_part(iid, 2, sub, InstanceState.RUNNING)  # no such rank
    part = store.get_instance(iid).parts[0]  # type: ignore[union-attr]
    assert (part.state, part.address, part.port, part.pid) == (InstanceState.RUNNING, "10.0.0.2", 50052, 7)


def _npu(index: int, ip: str) -> Device:
    return Device(
        accelerator="cann",
        vendor="ascend",
        device_type="npu",
        index=index,
        uuid=f"npu-{ip}",
        name="910B",
        memory_total_bytes=64 * 2**30,
        extra={"device_ip": ip},
    )


def test_a_group_lists_every_worker_with_its_address_and_placed_devices(store: Store) -> None:
    store.register_worker(WorkerInfo(name="head", address="10.0.0.1", devices=(_npu(0, "a0"), _npu(1, "a1"))))
    store.register_worker(WorkerInfo(name="sub", address="10.0.0.2", devices=(_npu(0, "b0"), _npu(1, "b1"))))
    placement: dict[str, Any] = {
        "deployment": "g",
        "replica": 0,
        "worker": "head",
        "subordinate_workers": ["sub"],
        "devices": [
            {"worker": "head", "accelerator": "cann", "index": 1},
            {"worker": "sub", "accelerator": "cann", "index": 0},
        ],
        "claim": {"strategy": "multi_worker", "devices": [{"memory_bytes": 1}, {"memory_bytes": 1}]},
    }
    group = _groups(store, {"i1": placement})["i1"]
    assert [(m.rank, m.worker, m.address) for m in group] == [(0, "head", "10.0.0.1"), (1, "sub", "10.0.0.2")]
    assert [[d.extra["device_ip"] for d in m.devices] for m in group] == [["a1"], ["b0"]]  # placed ones only
    # a worker of the placement the server does not know: no group (the engine refuses, naming it)
    assert _groups(store, {"i2": {**placement, "subordinate_workers": ["gone"]}}) == {}
    assert _groups(store, {"i3": {"worker": "head"}}) == {}  # not a placement: no group, no error


def test_a_failed_part_fails_the_group_and_a_retry_restarts_it_whole(store: Store) -> None:
    _, iid, head, sub = _placed_group(store)
    store.report(iid, head, InstanceState.RUNNING, port=40000)
    assert store.report_part(iid, 1, sub, InstanceState.ERROR, message="exited with code 1")
    inst = store.get_instance(iid)
    assert inst is not None
    assert inst.state == InstanceState.ERROR
    assert inst.message == "rank 1 on worker sub failed: exited with code 1"
    assert store.retry_instance(iid, inst.version, "retrying")
    again = store.get_instance(iid)
    assert again is not None
    assert again.state == InstanceState.PENDING
    assert again.parts == ()
    assert store.worker_assignments(sub) == []
    assert store.worker_assignments(head) == []


def test_losing_a_subordinate_worker_requeues_the_group(store: Store) -> None:
    _, iid, head, sub = _placed_group(store)
    assert store.requeue_workers([sub], "worker sub stopped sending heartbeats") == 1
    inst = store.get_instance(iid)
    assert inst is not None
    assert inst.state == InstanceState.PENDING
    assert inst.worker_id is None
    assert inst.parts == ()
    assert store.worker_assignments(head) == []


def test_deleting_the_instance_removes_its_parts(store: Store) -> None:
    _, iid, _, sub = _placed_group(store)
    assert store.delete_instance(iid)
    assert store.worker_assignments(sub) == []


def test_a_placement_naming_an_unknown_subordinate_is_refused(store: Store) -> None:
    dep_id = store.create_deployment(
        Deployment(name="g", model=ModelRef(source="local", id="/m.gguf"), engine="fake")
    ).id
    store.ensure_replicas(dep_id, 1)
    head = store.register_worker(WorkerInfo(name="head")).id
    inst = store.list_instances(deployment_id=dep_id)[0][0]
    assert not store.place(inst.id, inst.version, head, {"worker": "head", "subordinate_workers": ["ghost"]})
    after = store.get_instance(inst.id)
    assert after is not None
    assert after.state == InstanceState.PENDING


# ----------------------------------------------------------------------------- end to end


def _cmdline(pid: int) -> list[str]:
    return psutil.Process(pid).cmdline()


@pytest.fixture
def split_device_bytes(tiny_model: Path) -> int:
    """A device size that holds half of the tiny model but not all of it (from the estimator)."""
    from gpustack_core.estimate import EstimateOptions, estimate_model
    from gpustack_core.types import SourceOptions

    host = make_group_host(1, "x")
    metadata = host.model_source("local").resolve(
        ModelRef(source="local", id=str(tiny_model)), SourceOptions(cache_dir=str(tiny_model.parent))
    )
    whole = estimate_model(metadata, EstimateOptions(), local_path=str(tiny_model)).claims[0]
    split = next(
        c
        for c in estimate_model(metadata, EstimateOptions(gpus=2), local_path=str(tiny_model)).claims
        if c.strategy == "multi_device"
    )
    need = max(d.memory_bytes for d in split.devices)
    assert need < whole.devices[0].memory_bytes, "the split must need less per device than one device"
    return (need + whole.devices[0].memory_bytes) // 2


@pytest.fixture
async def group_server(tmp_path: Path, split_device_bytes: int) -> AsyncIterator[Running]:
    """The server over HTTP without an embedded worker (both workers are processes)."""
    # 15 s: on a loaded machine a worker's heartbeat can come late; a worker declared lost would
    # restart the group in the middle of the scenario (worker loss is covered in the store tests)
    config = fast_config(tmp_path / "server", embedded_worker=False, heartbeat_timeout_s=15.0)
    async for running in serve_http(config, host=make_group_host(split_device_bytes, "server")):
        yield running


async def _instance(server: Running, name: str) -> dict[str, Any] | None:
    items = (await server.api("GET", "/instances", params={"deployment": name})).json()["items"]
    return items[0] if items else None


async def _split_group_scenario(
    server: Running,
    tiny_model: Path,
    addresses: dict[str, str],
    seen_pids: list[int],
    engine: str = "fake-group",
) -> None:
    """Both workers registered: deploy the split model, check the group, chat, kill the part,
    see the group restart, delete. ``addresses``: worker name -> the address it reports.
    ``engine``: ``fake-group`` (subordinates first, llama.cpp RPC) or ``fake-head-first`` (Ray)."""
    head_first = engine == "fake-head-first"

    async def both_ready() -> bool:
        r = await server.api("GET", "/workers", params={"state": "ready"})
        return {w["name"] for w in r.json()["items"]} == set(addresses)

    await server.wait_for(both_ready, timeout=60)
    body = {
        "name": "split",
        "model": f"local:{tiny_model}",
        "engine": engine,
        "allow_multi_worker": True,
        "allow_cpu_offload": False,
    }
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    async def running() -> dict[str, Any] | None:
        inst = await _instance(server, "split")
        ok = inst is not None and inst["state"] == "running" and inst["parts"]
        return inst if ok and all(p["state"] == "running" for p in inst["parts"]) else None

    inst = await server.wait_for(running, timeout=90)
    assert inst["placement"]["claim"]["strategy"] == "multi_worker"
    [part] = inst["parts"]
    assert {inst["worker"], part["worker"]} == set(addresses)
    assert part["rank"] == 1
    assert part["address"] == addresses[part["worker"]]
    seen_pids += [inst["pid"], part["pid"]]
    head_argv, part_argv = _cmdline(inst["pid"]), _cmdline(part["pid"])
    if head_first:  # the head published its address first; the other rank joined it there
        head_address = inst["head_address"]
        assert head_address.startswith(f"{addresses[inst['worker']]}:")
        assert head_argv[head_argv.index("--rendezvous") + 1] == head_address
        assert part_argv[part_argv.index("--head") + 1] == head_address
        part_says, head_says = f"joined head at {head_address} as rank 1", "rank joined: JOIN 1"
    else:  # the part started first; the head got its address
        assert head_argv[head_argv.index("--rpc") + 1] == f"{part['address']}:{part['port']}"
        assert "rpc" in Path(part_argv[1]).name
        bind = "127.0.0.1" if part["address"] == "127.0.0.1" else "0.0.0.0"
        part_says = f"rpc stand-in listening on {bind}:{part['port']}"
        head_says = f"connected to rpc server {part['address']}:{part['port']}"

    # instance detail: every part's log, through the server from the worker that runs it
    async def log_says(rank: int, text: str) -> bool:  # the log pump writes lines as they come
        r = await server.api("GET", f"/instances/{inst['id']}/logs", params={"rank": rank, "tail": 20})
        assert r.status_code == 200, r.text
        return text in r.text

    await server.wait_for(lambda: log_says(1, part_says), timeout=15)
    await server.wait_for(lambda: log_says(0, head_says), timeout=15)
    r = await server.api("GET", f"/instances/{inst['id']}/logs", params={"rank": 2})
    assert r.status_code == 404
    assert "its parts: 1" in r.text

    # llama.cpp-style parts download nothing; head-first ranks read the weights too
    files = (await server.api("GET", "/model-files")).json()["items"]
    on = {inst["worker_id"], part["worker_id"]} if head_first else {inst["worker_id"]}
    assert {f["worker_id"] for f in files} == on

    # workers report measured device memory of their engines and the models they hold
    async def measured() -> dict[str, Any] | None:
        found = {w["name"]: w["info"] for w in (await server.api("GET", "/workers")).json()["items"]}
        managed = {n: sum(i["managed_device_memory_used_bytes"].values()) for n, i in found.items()}
        return found if managed == {inst["worker"]: USED_BYTES[0], part["worker"]: USED_BYTES[1]} else None

    infos = await server.wait_for(measured, timeout=30)
    assert f"local:{tiny_model}" in infos[inst["worker"]]["cached_models"]
    assert (f"local:{tiny_model}" in infos[part["worker"]]["cached_models"]) == head_first

    # served through the gateway with the official client
    r = await server.api("POST", "/api-keys", json={"name": "app", "scopes": ["inference"]})
    key = r.json()["key"]
    import openai

    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=key)
    reply = await client.chat.completions.create(
        model="split", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.choices[0].message.content
    await client.close()

    # the subordinate's process dies: the whole group restarts (new head, new part)
    os.kill(part["pid"], signal.SIGKILL)

    async def restarted() -> dict[str, Any] | None:
        now = await running()
        return now if now is not None and now["restarts"] >= 1 else None

    again = await server.wait_for(restarted, timeout=90)
    assert again["pid"] != inst["pid"]
    assert again["parts"][0]["pid"] != part["pid"]
    assert not alive(inst["pid"])
    seen_pids += [again["pid"], again["parts"][0]["pid"]]

    # delete: every part on every worker stops
    assert (await server.api("DELETE", "/deployments/split")).status_code == 202

    async def gone() -> bool:
        return (await server.api("GET", "/deployments/split")).status_code == 404

    await server.wait_for(gone, timeout=60)

    async def all_stopped() -> bool:
        return not any(alive(pid) for pid in seen_pids)

    await server.wait_for(all_stopped, timeout=30)


@pytest.mark.anyio
async def test_a_model_split_over_two_workers_runs_as_one_group(
    group_server: Running, tmp_path: Path, tiny_model: Path, split_device_bytes: int
) -> None:
    """Loopback variant: both workers on this host, distinct ports."""
    names = ("worker-a", "worker-b")
    workers = [start_group_worker(group_server, n, tmp_path / n, split_device_bytes) for n in names]
    seen_pids: list[int] = []
    try:
        await _split_group_scenario(group_server, tiny_model, dict.fromkeys(names, "127.0.0.1"), seen_pids)
    finally:
        stop_all(workers, seen_pids)


@pytest.mark.anyio
async def test_a_head_first_group_starts_the_head_and_the_other_rank_joins_it(
    group_server: Running, tmp_path: Path, tiny_model: Path, split_device_bytes: int
) -> None:
    """Loopback: the Ray / torch-distributed order (head first, ranks join its address)."""
    names = ("worker-a", "worker-b")
    workers = [start_group_worker(group_server, n, tmp_path / n, split_device_bytes) for n in names]
    seen_pids: list[int] = []
    try:
        addresses = dict.fromkeys(names, "127.0.0.1")
        await _split_group_scenario(group_server, tiny_model, addresses, seen_pids, "fake-head-first")
    finally:
        stop_all(workers, seen_pids)


@pytest.mark.anyio
async def test_a_model_split_across_two_network_namespaces(
    tmp_path: Path, tiny_model: Path, split_device_bytes: int
) -> None:
    """Two hosts as two network namespaces joined by veth: the server and worker-a in one,
    worker-b in the other; the head reaches the RPC stand-in across the link."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"{reason}; the loopback variant covers the group on one host")
    seen_pids: list[int] = []
    with netns_pair() as pair:
        group = group_across_namespaces(pair, tmp_path, split_device_bytes, "test-gpu", seen_pids)
        async with group as (server, addresses):
            await _split_group_scenario(server, tiny_model, addresses, seen_pids)


@pytest.fixture
async def installed_server(tmp_path: Path) -> AsyncIterator[Running]:
    """The server over HTTP with the installed plugins, without an embedded worker."""
    config = fast_config(tmp_path / "server", embedded_worker=False, heartbeat_timeout_s=15.0)
    async for running in serve_http(config, host=PluginHost(environ={})):
        yield running


@pytest.mark.anyio
async def test_the_host_memory_worker_reports_its_size_as_free_host_memory(
    installed_server: Running, tmp_path: Path
) -> None:
    """The worker main's other fake, which ``test_server_llama_rpc.py`` uses (and which needs a native
    llama.cpp build): the installed plugins, the given host memory, none of it used or reserved."""
    server, size = installed_server, 123 * 2**20
    worker = start_group_worker(server, "worker-a", tmp_path / "worker-a", size, fake="host-memory")
    seen_pids: list[int] = []
    try:

        async def reported() -> dict[str, Any] | None:
            items = (await server.api("GET", "/workers", params={"state": "ready"})).json()["items"]
            return items[0]["info"] if items else None

        info = await server.wait_for(reported, timeout=60)
    finally:
        stop_all([worker], seen_pids)
    assert info["memory_total_bytes"] == size
    assert (info["memory_used_bytes"], info["reserved_memory_bytes"]) == (0, 0)
    assert "llama.cpp" in info["engines"], info["engines"]
    assert "fake-group" not in info["engines"], info["engines"]


# ----------------------------------------------------------------------------- locality


@pytest.mark.parametrize("cached_on", [None, "w2"])
def test_a_worker_reporting_the_model_cached_attracts_the_placement(
    tmp_path: Path, tiny_model: Path, cached_on: str | None
) -> None:
    from server_fake_engine import make_host

    from gpustack_core.server.controllers import Controllers
    from gpustack_core.server.services import Services
    from gpustack_core.server.store import migrate
    from gpustack_core.server.store.database import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    try:
        store = Store(engine)
        ctl = Controllers(Services(config=fast_config(tmp_path), store=store, host=make_host()))
        model = ModelRef(source="local", id=str(tiny_model))
        for name in ("w1", "w2"):
            cached = (f"local:{tiny_model}",) if name == cached_on else ()
            info = WorkerInfo(
                name=name, cpu_count=8, memory_total_bytes=64 * 2**30, engines=("fake",), cached_models=cached
            )
            store.register_worker(info)
        store.create_deployment(Deployment(name="d", model=model, engine="fake"))
        ctl.reconcile_deployments()
        ctl.schedule_pending()
        [inst] = store.list_instances()[0]
        # equal workers: the first by name, unless the other holds the model already
        assert inst.worker == (cached_on or "w1")
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- server restart


@pytest.mark.anyio
async def test_a_server_restart_adopts_every_part_of_a_running_group(
    tmp_path: Path, tiny_model: Path, split_device_bytes: int
) -> None:
    """The server stops and starts again on the same database; the group's processes on both
    workers keep running (same pids, no restart) and the instance stays running with its part."""
    data, port = tmp_path / "server", free_port()
    base = f"http://127.0.0.1:{port}"
    serve = [sys.executable, str(HERE / "server_group_serve_main.py"), str(data), "127.0.0.1", str(port)]

    def start_server() -> subprocess.Popen[bytes]:
        with open(tmp_path / "server.log", "ab") as log:
            return subprocess.Popen([*serve, str(split_device_bytes)], stdout=log, stderr=subprocess.STDOUT)

    processes = [start_server()]
    seen_pids: list[int] = []
    async with httpx.AsyncClient(base_url=base) as client:
        server = Running(None, client, data, base)
        try:
            await server.wait_healthy(timeout=60)
            await server.login_admin()
            names = ("worker-a", "worker-b")
            processes += [start_group_worker(server, n, tmp_path / n, split_device_bytes) for n in names]

            async def both_ready() -> bool:
                r = await server.api("GET", "/workers", params={"state": "ready"})
                return {w["name"] for w in r.json()["items"]} == set(names)

            await server.wait_for(both_ready, timeout=60)
            body = {
                "name": "split",
                "model": f"local:{tiny_model}",
                "engine": "fake-group",
                "allow_multi_worker": True,
                "allow_cpu_offload": False,
            }
            assert (await server.api("POST", "/deployments", json=body)).status_code == 201

            async def running() -> dict[str, Any] | None:
                inst = await _instance(server, "split")
                ok = inst is not None and inst["state"] == "running" and inst["parts"]
                return inst if ok and all(p["state"] == "running" for p in inst["parts"]) else None

            before = await server.wait_for(running, timeout=90)
            seen_pids += [before["pid"], before["parts"][0]["pid"]]

            processes[0].send_signal(signal.SIGTERM)
            processes[0].wait(30)
            processes[0] = start_server()
            await server.wait_healthy(timeout=60)
            await server.login_admin()
            await server.wait_for(both_ready, timeout=60)
            await anyio.sleep(3)  # several poll and report rounds of both workers
            after = await server.wait_for(running, timeout=30)
            assert (after["id"], after["pid"], after["restarts"]) == (before["id"], before["pid"], 0)
            assert after["parts"][0]["pid"] == before["parts"][0]["pid"]
            assert all(alive(pid) for pid in seen_pids)
        finally:
            stop_all(processes[::-1], seen_pids)


def test_multi_worker_claims_split_the_model_over_two_to_four_devices(tiny_model: Path) -> None:
    from gpustack_core.estimate import EstimateOptions, estimate_model
    from gpustack_core.server.planning import with_multi_worker_claims
    from gpustack_core.types import SourceOptions

    host = make_group_host(1, "x")
    metadata = host.model_source("local").resolve(
        ModelRef(source="local", id=str(tiny_model)), SourceOptions(cache_dir=str(tiny_model.parent))
    )
    base = estimate_model(metadata, EstimateOptions(), local_path=str(tiny_model))
    extended = with_multi_worker_claims(base, metadata, EstimateOptions(), str(tiny_model))
    added = [c for c in extended.claims[len(base.claims) :] if c.devices]
    on_hosts = [c for c in extended.claims[len(base.claims) :] if c.spans_worker_hosts]
    assert extended.claims[: len(base.claims)] == base.claims
    assert len(extended.claims) == len(base.claims) + len(added) + len(on_hosts)
    # the tiny model has 3 layers (2 blocks + output): no split leaves a fourth device work
    assert [(c.strategy, c.device_count, c.tensor_parallel_size) for c in added] == [
        ("multi_worker", n, 1) for n in (2, 3)
    ]
    # the same spans over the CPUs of workers: the head keeps a block, the RPC servers the rest
    whole = next(c for c in base.claims if c.strategy == "cpu_only").host_memory_bytes
    assert [len(c.worker_host_memory_bytes) for c in on_hosts] == [2, 3]
    assert [(c.offloaded_layers, c.total_layers) for c in on_hosts] == [(2, 3), (2, 3)]
    assert all(c.worker_host_memory_bytes[0] < whole for c in on_hosts)
    # each device of a wider split holds less
    assert [max(d.memory_bytes for d in c.devices) for c in added] == sorted(
        (max(d.memory_bytes for d in c.devices) for c in added), reverse=True
    )
    only_three = with_multi_worker_claims(base, metadata, EstimateOptions(), str(tiny_model), gpus=3)
    assert [
        (c.device_count, len(c.worker_host_memory_bytes)) for c in only_three.claims[len(base.claims) :]
    ] == [
        (3, 0),
        (0, 3),
    ]
