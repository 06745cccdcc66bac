"""Quotas across two real server processes (``serve --no-worker``) on one PostgreSQL database: a
worker process runs the fake OpenAI engine, one key has a token budget, concurrent streams are
split across both servers' gateways; the budget holds exactly (issue #16's acceptance, end to end)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import psutil
import pytest
import sqlalchemy as sa
from server_helpers import POSTGRES_ENV, Running, _fresh_database, free_port
from test_governance_gateway import _body, _check_budget, _estimate, _fire, _key

from gpustack_core.server.store import Store
from gpustack_core.server.store import schema as t
from gpustack_core.server.store.database import make_engine
from gpustack_core.server.store.governance import GovernanceStore

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} not set")
    yield from _fresh_database(os.environ[POSTGRES_ENV])


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        # the worker leaves its engines running for the next start to adopt: stop them too
        children = []
        for p in started:
            with contextlib.suppress(psutil.Error):
                children.extend(psutil.Process(p.pid).children(recursive=True))
        for p in reversed(started):  # worker first: it stops its engines on SIGTERM
            if p.poll() is None:
                p.terminate()
        for p in reversed(started):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
                child.wait(10)


async def test_two_serve_processes_on_one_postgresql_share_a_key_budget(
    postgres_url: str, tmp_path: Path, tiny_model: Path
) -> None:
    engine = make_engine(postgres_url)
    store = Store(engine)
    servers: list[Running] = []
    with _processes() as procs:
        try:
            for name in ("a", "b"):
                port = free_port()
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(HERE / "server_serve_no_worker_main.py"),
                            str(tmp_path / name),
                            str(port),
                            postgres_url,
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                )
                base = f"http://127.0.0.1:{port}"
                running = Running(None, httpx.AsyncClient(base_url=base, timeout=60), tmp_path / name, base)
                await running.wait_healthy(timeout=30)
                servers.append(running)
            a, b = servers
            await a.login_admin()  # the first server created the admin on the shared database
            token = (tmp_path / "a" / "token").read_text().strip()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "server_worker_main.py"),
                        a.base_url,
                        token,
                        "worker-x",
                        str(tmp_path / "worker"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            spec = {
                "name": "chat",
                "model": f"local:{tiny_model}",
                "engine": "fake",
                "extra_args": ["--openai"],
            }
            r = await a.api("POST", "/deployments", json=spec)
            assert r.status_code == 201, r.text

            _, key_id, key = _key(store)
            body = _body()
            budget = _estimate(body) * 10 + 100  # ten reservations fit at once
            lim = GovernanceStore(engine).set_limit("key", key_id, "", "tokens", "day", budget)
            headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
            one = json.dumps({**json.loads(body), "max_tokens": 1, "fake_tokens": 1}).encode()

            warm: list[httpx.Response] = []
            for server in servers:  # both gateways route to the instance and see the limit

                async def answers(s: Running = server) -> bool:
                    r = await s.client.post("/v1/chat/completions", content=one, headers=headers)
                    if r.status_code == 200:
                        warm.append(r)
                    return r.status_code == 200 and "x-ratelimit-limit-tokens" in r.headers

                await server.wait_for(answers, timeout=40)

            def usage() -> tuple[int, int]:
                with engine.connect() as c:
                    rows = c.execute(sa.select(t.usage).where(t.usage.c.key_id == key_id)).fetchall()
                return sum(r.requests for r in rows), sum(r.prompt_tokens + r.completion_tokens for r in rows)

            # the warm-up requests are spent; start the budget over from a clean slate
            async def flushed() -> bool:
                await anyio.sleep(0.6)  # the usage sinks write every 0.5 s
                return usage()[0] == len(warm)

            await a.wait_for(flushed, timeout=10)
            with engine.begin() as c:
                c.execute(t.usage.delete().where(t.usage.c.key_id == key_id))
                c.execute(t.limit_counters.delete().where(t.limit_counters.c.limit_id == lim.id))

            responses = await _fire([a.client, b.client], key, body, 48)
            ok = sum(1 for r in responses if r.status_code == 200)

            async def written() -> bool:
                await anyio.sleep(0.6)
                return usage()[0] >= ok

            await a.wait_for(written, timeout=10)
            _check_budget(store, responses, key_id, budget, lim.id)
            # both servers answered (accepted and refused requests alike)
            assert {str(r.request.url.port) for r in responses} == {
                str(httpx.URL(s.base_url or "").port) for s in servers
            }
        finally:
            for s in servers:
                await s.client.aclose()
    engine.dispose()
