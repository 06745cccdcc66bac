"""Helpers of the server tests: configuration, in-process and HTTP servers, fresh databases,
deploying and waiting for running instances."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from server_fake_engine import make_host

from gpustack_core.plugins import PluginHost
from gpustack_core.server import ServerConfig, create_app
from gpustack_core.server.security import PasswordHashing

POSTGRES_ENV = "GPUSTACK_TEST_POSTGRES_URL"
MYSQL_ENV = "GPUSTACK_TEST_MYSQL_URL"


def _fresh_database(base_url: str) -> Iterator[str]:
    """Create a uniquely named database next to ``base_url``'s, yield its URL, drop it after."""
    url = sa.make_url(base_url)
    name = f"gpustack_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"cannot reach the test database at {base_url}: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            if url.get_backend_name() == "postgresql":
                c.execute(
                    sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                    {"n": name},
                )
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def fast_config(data_dir: Path, database_url: str | None = None, **overrides: Any) -> ServerConfig:
    """A configuration with short intervals for tests."""
    values: dict[str, Any] = dict(
        data_dir=data_dir,
        database_url=database_url,
        reconcile_interval_s=0.2,
        heartbeat_timeout_s=3.0,
        restart_backoff_s=0.5,
        worker_poll_interval_s=0.2,
        worker_heartbeat_interval_s=0.5,
        worker_name="worker-a",
        keep_engines_on_exit=False,
    )
    values.update(overrides)
    return ServerConfig(**values)


def cheap_hashing() -> PasswordHashing:
    """Argon2 with test-sized parameters (the production default is memory-hard)."""
    return PasswordHashing(time_cost=1, memory_cost_kib=64)


class Running:
    """A started application: in-process client (``client``), admin token and data directory."""

    def __init__(
        self, app: Any, client: httpx.AsyncClient, data_dir: Path, base_url: str | None = None
    ) -> None:
        self.app = app
        self.client = client
        self.data_dir = data_dir
        self.base_url = base_url
        self.admin_token = ""

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """A request to ``/api/v1<path>`` as the admin (or with ``token``; ``""`` for none)."""
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.request(method, f"/api/v1{path}", headers=headers, **kwargs)

    async def login_admin(self) -> None:
        password = (self.data_dir / "initial_admin_password").read_text().strip()
        r = await self.client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        assert r.status_code == 200, r.text
        self.admin_token = r.json()["token"]

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until ``/healthz`` answers 200 (a server started in another process is up)."""

        async def up() -> bool:
            try:
                return (await self.client.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await self.wait_for(up, timeout=timeout, what="/healthz")

    async def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        with anyio.fail_after(timeout):
            while True:
                value = await predicate()
                if value:
                    return value
                await anyio.sleep(0.2)


async def start_app(config: ServerConfig, host: PluginHost | None = None) -> AsyncIterator[Running]:
    """Run the app's lifespan and yield a client bound to it without a socket (default plugins:
    the installed ones plus the fake engine)."""
    app = create_app(config, host=host or make_host(), hashing=cheap_hashing())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            running = Running(app, client, Path(config.data_dir))
            await running.login_admin()
            yield running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def serve_http(config: ServerConfig, host: PluginHost | None = None) -> AsyncIterator[Running]:
    """Run the app under uvicorn on a free loopback port (for workers in other processes)."""
    port = free_port()
    app = create_app(config, host=host or make_host(), hashing=cheap_hashing())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    base = f"http://127.0.0.1:{port}"
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        async with httpx.AsyncClient(base_url=base) as client:
            with anyio.fail_after(30):
                while not server.started:
                    await anyio.sleep(0.05)
            running = Running(app, client, Path(config.data_dir), base)
            await running.login_admin()
            try:
                yield running
            finally:
                server.should_exit = True


async def deploy_and_wait_running(
    server: Running, bodies: Sequence[Mapping[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    """Create a deployment of one replica from each of ``bodies`` (at least one) through the API,
    wait until the server has that many instances, all running, and return them. An instance in
    ``error`` fails the test at once, with its deployment and message."""
    for body in bodies:
        r = await server.api("POST", "/deployments", json=body)
        assert r.status_code == 201, r.text

    async def all_running() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await server.api("GET", "/instances")).json()["items"]
        failed = [i for i in items if i["state"] == "error"]
        if failed:
            pytest.fail(f"instance {failed[0]['deployment']} failed: {failed[0]['message']}")
        return items if len(items) == len(bodies) and all(i["state"] == "running" for i in items) else None

    instances: list[dict[str, Any]] = await server.wait_for(all_running, timeout=timeout)
    return instances
