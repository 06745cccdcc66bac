"""What every server process puts in front of its gateway: ``/v1`` dispatched before the management
routing, the request body deadline on asyncio and on other event loops, one key check per token
in flight, and uvloop for ``anyio.run``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from gpustack_core._platform import event_loop_options
from gpustack_core.gateway import Principal
from gpustack_core.server import gateway_bridge
from gpustack_core.server.gateway_bridge import StoreKeyAuthenticator
from gpustack_core.server.gateway_workers import GatewayFirst
from gpustack_core.server.request_limits import RequestBodyTimeout
from gpustack_core.server.security import hash_secret, new_api_key
from gpustack_core.server.store import Store

pytestmark = pytest.mark.anyio


class _Recorder:
    """An ASGI app that remembers the paths (or scope types) it was called with."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope.get("path", scope["type"]))


async def test_gateway_first_sends_only_http_requests_under_v1_to_the_gateway() -> None:
    app, gateway = _Recorder(), _Recorder()
    front = GatewayFirst(app, gateway)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    async def drop(message: Message) -> None:
        return None

    for path in ("/v1", "/v1/chat/completions", "/v1/models/a/b", "/v10", "/api/v1/users", "/metrics", "/"):
        await front({"type": "http", "path": path}, nothing, drop)
    await front({"type": "websocket", "path": "/v1/realtime"}, nothing, drop)
    await front({"type": "lifespan"}, nothing, drop)
    assert gateway.seen == ["/v1", "/v1/chat/completions", "/v1/models/a/b"]
    assert app.seen == ["/v10", "/api/v1/users", "/metrics", "/", "/v1/realtime", "lifespan"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_body_that_does_not_arrive_is_a_disconnect_then_408_on_any_event_loop(backend: str) -> None:
    if backend == "trio" and importlib.util.find_spec("trio") is None:
        pytest.skip("trio is not installed")
    seen: list[Message] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())  # the first part of the body
        seen.append(await receive())  # the rest never comes: the deadline answers

    async def main() -> None:
        parts: list[Message] = [{"type": "http.request", "body": b"{", "more_body": True}]

        async def receive() -> Message:
            if parts:
                return parts.pop()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            sent.append(message)

        await RequestBodyTimeout(app, timeout_s=0.05)({"type": "http", "path": "/v1/x"}, receive, send)

    anyio.run(main, backend=backend)
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


async def test_a_complete_body_is_passed_through_without_a_deadline_afterwards() -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(await receive())
        received.append(await receive())  # after the body: the client's disconnect, whenever it comes

    messages: list[Message] = [{"type": "http.disconnect"}, {"type": "http.request", "body": b"{}"}]

    async def receive() -> Message:
        if len(messages) == 1:
            await anyio.sleep(0.1)  # longer than the deadline: no longer bounded once the body is in
        return messages.pop()

    async def send(message: Message) -> None:
        raise AssertionError(f"nothing is sent: {message}")

    await RequestBodyTimeout(app, timeout_s=0.05)({"type": "http", "path": "/v1/x"}, receive, send)
    assert received == [{"type": "http.request", "body": b"{}"}, {"type": "http.disconnect"}]


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.01)


def _key(store: Store) -> str:
    user = store.create_user(f"u-{new_api_key()[0]}", "x", "user")
    key_id, token = new_api_key()
    store.create_key(key_id, user.id, "k", "key", hash_secret(token), ["inference"], None, None)
    return token


@pytest.fixture
def held_lookups(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], threading.Event]:
    """The authenticator's database checks (real ones), each held until the event is set."""
    calls: list[str] = []
    release = threading.Event()
    real = gateway_bridge._authenticate_with_access

    def held(store: Store, token: str) -> Any:
        calls.append(token)
        if not release.wait(30):
            raise TimeoutError("the test never released the lookup")
        return real(store, token)

    monkeypatch.setattr(gateway_bridge, "_authenticate_with_access", held)
    return calls, release


@pytest.fixture
def key_auth(store: Store) -> tuple[StoreKeyAuthenticator, str]:
    """An authenticator on ``store`` that caches for a minute, and a valid key for it."""
    auth = StoreKeyAuthenticator(ttl_s=60)
    auth.store = store
    return auth, _key(store)


async def test_concurrent_requests_with_one_token_share_one_database_check(
    key_auth: tuple[StoreKeyAuthenticator, str], held_lookups: tuple[list[str], threading.Event]
) -> None:
    calls, release = held_lookups
    auth, token = key_auth
    results: list[Principal | None] = []

    async def one(t: str) -> None:
        results.append(await auth.authenticate(t))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one, token)
        group.start_soon(one, token + "x")  # another token is checked on its own
        await _until(lambda: len(calls) >= 2)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert len(results) == 21
    assert results.count(None) == 1
    principals = [r for r in results if r is not None]
    assert all(p == principals[0] for p in principals)
    assert await auth.authenticate(token) == principals[0]  # and cached
    assert sorted(calls) == [token, token + "x"]


async def test_a_request_after_invalidate_does_not_wait_for_a_check_begun_before_it(
    key_auth: tuple[StoreKeyAuthenticator, str], held_lookups: tuple[list[str], threading.Event]
) -> None:
    calls, release = held_lookups
    auth, token = key_auth
    results: list[Principal | None] = []

    async def one() -> None:
        results.append(await auth.authenticate(token))

    async with anyio.create_task_group() as group:
        group.start_soon(one)
        await _until(lambda: len(calls) == 1)
        auth.invalidate()  # a key or user changed while the first check was running
        group.start_soon(one)
        await _until(lambda: len(calls) == 2)
        release.set()
    assert len(results) == 2
    assert None not in results
    assert await auth.authenticate(token) is not None
    assert len(calls) == 2  # the second check (begun after invalidate) was cached


def test_server_processes_run_on_uvloop_where_it_is_installed() -> None:
    if os.name == "nt" or importlib.util.find_spec("uvloop") is None:
        assert event_loop_options() == {}
        return
    import uvloop

    async def loop_type() -> type:
        import asyncio

        return type(asyncio.get_running_loop())

    assert anyio.run(loop_type, backend_options=event_loop_options()) is uvloop.Loop


def test_startup_objects_leave_the_collectors_full_passes() -> None:
    """In a fresh interpreter (``gc.freeze`` is process-wide): what the server module's import left
    is frozen, and collection still works for what comes after."""
    script = (
        "import gc\n"
        "from gpustack_core.server.gateway_workers import freeze_startup_objects\n"
        "assert gc.get_freeze_count() == 0\n"
        "freeze_startup_objects()\n"
        "frozen = gc.get_freeze_count()\n"
        "cycle = []; cycle.append(cycle); del cycle\n"
        "print(frozen, gc.collect())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    frozen, collected = map(int, out.split())
    assert frozen > 10_000, frozen  # the modules the import loaded
    assert collected >= 1, "a cycle made after the freeze is still collected"
