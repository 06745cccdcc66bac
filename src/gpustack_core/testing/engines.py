"""The engine conformance suite: what every engine plugin must do, checked against the real engine.

A plugin author subclasses :class:`EngineConformanceSuite` in a test file and provides fixtures,
as with SQLAlchemy's dialect suite or fsspec's abstract tests::

    import pytest
    from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite

    @pytest.mark.slow
    class TestMyEngineConformance(EngineConformanceSuite):
        @pytest.fixture
        def engine(self): return MyEngine()

        @pytest.fixture
        def installation(self, engine): return engine.locate(None, options) or engine.install(...)

        @pytest.fixture
        def model_paths(self, tmp_path): return {ModelCategory.LLM: (str(write_model(tmp_path)),)}

        @pytest.fixture
        def device_setup(self): return DeviceSetup.cpu()

The suite launches the engine through :class:`~gpustack_core.supervisor.Supervisor` for every
category the plugin claims and the author supplied a model for (others are skipped with the
reason), waits for readiness, calls the OpenAI endpoints of that category, checks that a graceful
stop leaves no process of the group behind, and that a ``kill -9`` is followed by a restart that
serves again. It needs ``anyio``'s pytest plugin (installed with anyio) and loopback networking.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import psutil
import pytest

from gpustack_core.contracts import Engine
from gpustack_core.errors import EngineArgumentError
from gpustack_core.supervisor import RestartPolicy, Supervisor
from gpustack_core.types import (
    Deployment,
    Device,
    DeviceRef,
    EngineInstallation,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelRef,
    Placement,
    ResourceClaim,
)
from gpustack_core.worker.runner import free_port

__all__ = ["DeviceSetup", "EngineConformanceSuite", "check_category_endpoints", "free_port"]


@dataclass(frozen=True)
class DeviceSetup:
    """The devices an engine runs on in the suite, with the accelerator plugin's visibility env."""

    devices: tuple[Device, ...] = ()
    visibility_env: dict[str, str] = field(default_factory=dict)
    worker: str = "conformance-worker"

    @classmethod
    def cpu(cls) -> DeviceSetup:
        """No accelerator devices: the engine runs on the host CPU."""
        return cls()


async def _chat(client: httpx.AsyncClient, base: str, name: str) -> None:
    body = {"model": name, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    response = await client.post(f"{base}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert isinstance(message.get("content") or "", str)
    chunks = 0
    done = False
    async with client.stream("POST", f"{base}/v1/chat/completions", json={**body, "stream": True}) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[len("data: ") :]
            if payload.strip() == "[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            assert chunk["object"] == "chat.completion.chunk"
            chunks += 1
    assert chunks >= 1, "no streamed chunks"
    assert done, "the stream did not end with [DONE]"


async def _completion(client: httpx.AsyncClient, base: str, name: str) -> None:
    response = await client.post(
        f"{base}/v1/completions", json={"model": name, "prompt": "Once upon a time", "max_tokens": 8}
    )
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["choices"][0]["text"], str)


async def _embeddings(client: httpx.AsyncClient, base: str, name: str) -> None:
    response = await client.post(f"{base}/v1/embeddings", json={"model": name, "input": ["hello", "world"]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2
    vector = data[0]["embedding"]
    assert len(vector) > 0
    assert all(isinstance(x, float) for x in vector)


async def _rerank(client: httpx.AsyncClient, base: str, name: str) -> None:
    response = await client.post(
        f"{base}/v1/rerank", json={"model": name, "query": "a cat", "documents": ["a dog", "a cat"]}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 2


async def check_category_endpoints(spec: LaunchSpec, category: ModelCategory) -> None:
    """Call the OpenAI endpoints of ``category`` on a ready engine and check the answers' shape."""
    base = f"http://127.0.0.1:{spec.port}"
    name = spec.served_model_name
    async with httpx.AsyncClient(timeout=60) as client:
        models = await client.get(f"{base}/v1/models")
        assert models.status_code == 200, models.text
        ids = [m["id"] for m in models.json()["data"]]
        assert name in ids, f"{name!r} not among the served models {ids}"
        if category == ModelCategory.LLM:
            await _chat(client, base, name)
            await _completion(client, base, name)
        elif category == ModelCategory.EMBEDDING:
            await _embeddings(client, base, name)
        elif category == ModelCategory.RERANK:
            await _rerank(client, base, name)


def _live_group(pgid: int) -> list[int]:
    members: list[int] = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


class EngineConformanceSuite:
    """Subclass (as ``Test...``) and provide the fixtures ``engine``, ``installation``,
    ``model_paths`` and ``device_setup``; optionally ``extra_args``."""

    #: Seconds to wait for the engine to become ready.
    ready_timeout_s: float = 180.0
    #: Categories with endpoint checks in this suite.
    checked_categories: tuple[ModelCategory, ...] = (
        ModelCategory.LLM,
        ModelCategory.EMBEDDING,
        ModelCategory.RERANK,
    )

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The suite runs on asyncio."""
        return "asyncio"

    @pytest.fixture
    def engine(self) -> Engine:
        """The engine object under test."""
        raise NotImplementedError("provide an `engine` fixture returning your Engine instance")

    @pytest.fixture
    def installation(self) -> EngineInstallation:
        """An installed version of the engine (locate it, or install it)."""
        raise NotImplementedError("provide an `installation` fixture (engine.locate or engine.install)")

    @pytest.fixture
    def model_paths(self) -> Mapping[ModelCategory, tuple[str, ...]]:
        """Local model files per category; a claimed category without a model is skipped."""
        raise NotImplementedError("provide a `model_paths` fixture: {ModelCategory.LLM: ('/path/model',)}")

    @pytest.fixture
    def device_setup(self) -> DeviceSetup:
        """Devices to run on; ``DeviceSetup.cpu()`` for none."""
        raise NotImplementedError("provide a `device_setup` fixture, e.g. DeviceSetup.cpu()")

    @pytest.fixture
    def extra_args(self) -> Mapping[ModelCategory, tuple[str, ...]]:
        """User-style extra arguments per category (passed through by the plugin)."""
        return {}

    # -- helpers ---------------------------------------------------------------------------

    def make_request(
        self,
        installation: EngineInstallation,
        category: ModelCategory,
        paths: tuple[str, ...],
        devices: DeviceSetup,
        extra: tuple[str, ...] = (),
    ) -> LaunchRequest:
        """A single-replica launch request on 127.0.0.1 and a free port."""
        deployment = Deployment(
            name=f"conformance-{category.value.replace('_', '-')}",
            model=ModelRef(source="local", id=paths[0]),
            engine=installation.engine,
            engine_version=installation.version,
            category=category,
            extra_args=extra,
        )
        worker = devices.worker
        refs = tuple(
            DeviceRef(worker=worker, accelerator=d.accelerator, index=d.index) for d in devices.devices
        )
        claim = ResourceClaim(strategy="single_device" if devices.devices else "cpu_only")
        placement = Placement(deployment=deployment.name, replica=0, worker=worker, devices=refs, claim=claim)
        return LaunchRequest(
            deployment=deployment,
            placement=placement,
            installation=installation,
            model_paths=paths,
            devices=devices.devices,
            visibility_env=devices.visibility_env,
            host="127.0.0.1",
            port=free_port(),
        )

    @asynccontextmanager
    async def running(
        self, engine: Engine, request: LaunchRequest, tmp_path: Path, restart: RestartPolicy | None = None
    ) -> AsyncIterator[tuple[Supervisor, LaunchSpec]]:
        """Launch ``request`` under a supervisor and wait until it is ready."""
        spec = engine.launch_spec(request)
        policy = restart or RestartPolicy(initial_backoff_s=0.2, max_backoff_s=1.0, health_interval_s=1.0)
        async with Supervisor(tmp_path / "state", tmp_path / "logs", policy, stop_grace_s=15) as sup:
            await sup.start("engine-under-test", spec)
            await sup.wait_ready("engine-under-test", timeout_s=self.ready_timeout_s)
            yield sup, spec

    def _first_served(
        self, engine: Engine, model_paths: Mapping[ModelCategory, tuple[str, ...]]
    ) -> tuple[ModelCategory, tuple[str, ...]]:
        for category in engine.capabilities().categories:
            if model_paths.get(category):
                return category, model_paths[category]
        pytest.skip("no model supplied for any category the engine claims")

    # -- tests -----------------------------------------------------------------------------

    def test_capabilities_are_declared(self, engine: Engine) -> None:
        """Name, formats, categories, vendors and a default version are declared."""
        caps = engine.capabilities()
        assert engine.name
        assert caps.formats
        assert caps.categories
        assert caps.vendors
        assert engine.default_version()

    def test_owned_flags_are_refused(
        self,
        engine: Engine,
        installation: EngineInstallation,
        model_paths: Mapping[ModelCategory, tuple[str, ...]],
        device_setup: DeviceSetup,
    ) -> None:
        """Every owned flag is refused as ``--flag value`` and ``--flag=value``."""
        category, paths = self._first_served(engine, model_paths)
        assert engine.owned_flags, "an engine owns at least its port flag"
        for flag in sorted(engine.owned_flags):
            for args in ((flag, "1"), (f"{flag}=1",)):
                request = self.make_request(installation, category, paths, device_setup, args)
                with pytest.raises(EngineArgumentError, match=flag):
                    engine.launch_spec(request)

    def test_unknown_flags_pass_through(
        self,
        engine: Engine,
        installation: EngineInstallation,
        model_paths: Mapping[ModelCategory, tuple[str, ...]],
        device_setup: DeviceSetup,
    ) -> None:
        """A flag the plugin does not know reaches the engine's argv unchanged."""
        category, paths = self._first_served(engine, model_paths)
        extra = ("--gpustack-conformance-unknown", "value")
        spec = engine.launch_spec(self.make_request(installation, category, paths, device_setup, extra))
        # On the command line, or (config-file engines) in a generated file.
        joined = " ".join(spec.argv) + " " + " ".join(spec.files.values())
        assert "gpustack-conformance-unknown" in joined

    @pytest.mark.anyio
    @pytest.mark.parametrize("category", list(ModelCategory))
    async def test_serves_claimed_category(
        self,
        category: ModelCategory,
        engine: Engine,
        installation: EngineInstallation,
        model_paths: Mapping[ModelCategory, tuple[str, ...]],
        device_setup: DeviceSetup,
        extra_args: Mapping[ModelCategory, tuple[str, ...]],
        tmp_path: Path,
    ) -> None:
        """Launch, readiness, and the category's OpenAI endpoints."""
        if category not in engine.capabilities().categories:
            pytest.skip(f"{engine.name} does not claim {category.value}")
        if category not in self.checked_categories:
            pytest.skip(f"the suite has no endpoint checks for {category.value} yet")
        paths = model_paths.get(category)
        if not paths:
            pytest.skip(f"no {category.value} model supplied")
        request = self.make_request(installation, category, paths, device_setup, extra_args.get(category, ()))
        async with self.running(engine, request, tmp_path) as (sup, spec):
            await check_category_endpoints(spec, category)
            assert sup.status("engine-under-test").state == "ready"

    @pytest.mark.anyio
    async def test_graceful_stop_leaves_no_process(
        self,
        engine: Engine,
        installation: EngineInstallation,
        model_paths: Mapping[ModelCategory, tuple[str, ...]],
        device_setup: DeviceSetup,
        tmp_path: Path,
    ) -> None:
        """SIGTERM to the process group ends the engine and everything it started."""
        category, paths = self._first_served(engine, model_paths)
        request = self.make_request(installation, category, paths, device_setup)
        async with self.running(engine, request, tmp_path) as (sup, _):
            pgid = sup.status("engine-under-test").pgid
            assert pgid is not None
            stopped = await sup.stop("engine-under-test", grace_s=15)
            assert stopped.state == "stopped"
            assert _live_group(pgid) == []

    @pytest.mark.anyio
    async def test_crash_is_restarted_and_serves_again(
        self,
        engine: Engine,
        installation: EngineInstallation,
        model_paths: Mapping[ModelCategory, tuple[str, ...]],
        device_setup: DeviceSetup,
        tmp_path: Path,
    ) -> None:
        """``kill -9`` of the engine: the supervisor restarts it and it answers again."""
        category, paths = self._first_served(engine, model_paths)
        request = self.make_request(installation, category, paths, device_setup)
        async with self.running(engine, request, tmp_path) as (sup, spec):
            first = sup.status("engine-under-test")
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
            with anyio.fail_after(self.ready_timeout_s):
                while True:
                    status = sup.status("engine-under-test")
                    if status.restarts >= 1 and status.state == "ready":
                        break
                    await anyio.sleep(0.1)
            assert status.pid != first.pid
            await check_category_endpoints(spec, category)
