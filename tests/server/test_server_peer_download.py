"""Download once per cluster, through the server: the second worker that needs a model copies its
files from the first worker's cache (the server names it in the assignment's ``peers``), so the
hub is asked for the file once for two workers. Real server over HTTP, two real worker agents with
their worker APIs, the real Hugging Face plugin against the local fake Hub of the source tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from server_fake_engine import make_host
from server_helpers import Running, fast_config, serve_http

from gpustack_core.worker.agent import WorkerAgent, WorkerConfig

pytestmark = pytest.mark.anyio


def _fake_hubs() -> Any:
    path = Path(__file__).resolve().parent.parent / "sources" / "fake_hubs.py"
    spec = importlib.util.spec_from_file_location("fake_hubs_for_server_tests", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hub(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    fake_hubs = _fake_hubs()
    state = fake_hubs.HubState(repos={"org/tiny": {"tiny-Q4_K_M.gguf": tiny_model.read_bytes()}})
    with fake_hubs.HubServer(fake_hubs.huggingface_app(state)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield state


@pytest.fixture
async def server(tmp_path: Path, hub: Any) -> AsyncIterator[Running]:
    config = fast_config(tmp_path / "server", embedded_worker=False, heartbeat_timeout_s=15.0)
    async for running in serve_http(config):
        yield running


async def test_the_hub_is_asked_once_for_two_workers(server: Running, hub: Any, tmp_path: Path) -> None:
    token = (server.data_dir / "token").read_text().strip()
    agents = [
        WorkerAgent(
            WorkerConfig(
                server_url=str(server.base_url),
                token=token,
                name=name,
                data_dir=tmp_path / name,
                labels={"w": name},
                keep_engines_on_exit=False,
            ),
            make_host(),
        )
        for name in ("a", "b")
    ]
    async with anyio.create_task_group() as group:
        for agent in agents:
            group.start_soon(agent.run)

        async def running(name: str) -> bool:
            r = await server.api("GET", "/instances", params={"deployment": name})
            items = r.json()["items"]
            return bool(items) and items[0]["state"] == "running"

        for worker in ("a", "b"):  # one after the other: the second finds the first's copy
            body = {
                "name": f"on-{worker}",
                "model": "huggingface:org/tiny#Q4_K_M",
                "engine": "fake",
                "label_selector": [{"key": "w", "operator": "equals", "values": [worker]}],
            }
            assert (await server.api("POST", "/deployments", json=body)).status_code == 201
            await server.wait_for(lambda w=f"on-{worker}": running(w), timeout=90)

        assert len(hub.download_gets("org/tiny/tiny-Q4_K_M.gguf")) == 1
        files = (await server.api("GET", "/model-files")).json()["items"]
        assert sorted((f["state"], f["downloaded_bytes"]) for f in files)[0] == ("ready", 0)
        copied = [Path(f["paths"][0]) for f in files]
        assert copied[0].read_bytes() == copied[1].read_bytes()
        for name in ("on-a", "on-b"):
            assert (await server.api("DELETE", f"/deployments/{name}")).status_code == 202

        async def gone() -> bool:
            return (await server.api("GET", "/deployments")).json()["total"] == 0

        await server.wait_for(gone, timeout=60)
        group.cancel_scope.cancel()
