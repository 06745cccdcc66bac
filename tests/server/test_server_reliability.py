"""Regressions of the probe of 2026-12-02 (issue #20): a client's mistake is never a 500, bodies are
bounded in size and time, the login limit cannot be bypassed or flooded, passwords follow a
policy, deployment secrets are write-only, and the OpenAPI document says what the API does."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from server_helpers import Running, fast_config, free_port, start_app

from gpustack_core.server.api import all_endpoints
from gpustack_core.server.api._common import PAGE_QUERY
from gpustack_core.server.security import PasswordHashing

pytestmark = pytest.mark.anyio

INT64_MAX = 2**63 - 1


@pytest.fixture
async def server(tmp_path: Path, database_url: str | None) -> AsyncIterator[Running]:
    config = fast_config(tmp_path / "data", database_url, embedded_worker=False, api_max_body_bytes=4096)
    async for running in start_app(config):
        yield running


def _deep(depth: int) -> bytes:
    return b'{"username": ' + b"[" * depth + b"]" * depth + b', "password": "x"}'


def _paged_list_routes() -> list[str]:
    return [
        re.sub(r"\{[^}]+\}", "x", ep.path)
        for ep in all_endpoints()
        if ep.method == "GET" and PAGE_QUERY[1] in ep.query and "{" not in ep.path
    ]


async def test_integers_past_bigint_are_422_on_every_list_route(server: Running) -> None:
    paths = _paged_list_routes()
    assert len(paths) >= 7
    for path in paths:
        ok = await server.api("GET", path, params={"offset": INT64_MAX})
        assert ok.status_code == 200, f"{path}: {ok.status_code} {ok.text}"
        assert ok.json()["items"] == []
        for name, value in [("offset", INT64_MAX + 1), ("limit", 2**64), ("offset", -1), ("limit", 0)]:
            r = await server.api("GET", path, params={name: value})
            assert r.status_code == 422, f"{path}?{name}={value}: {r.status_code} {r.text}"
            assert r.json()["detail"][0]["loc"] == ["query", name]


async def test_model_file_reports_are_validated_and_need_a_known_worker(server: Running) -> None:
    token = (server.data_dir / "token").read_text().strip()
    info = {"name": "w1", "address": "127.0.0.1", "devices": []}
    r = await server.api("POST", "/worker/register", token=token, json={"info": info})
    assert r.status_code == 200, r.text
    worker_id = r.json()["worker_id"]
    good = {"model": "m", "state": "downloading", "downloaded_bytes": 1, "total_bytes": 2}
    assert (
        await server.api("POST", f"/worker/{worker_id}/model-files", token=token, json=good)
    ).status_code == 204
    r = await server.api("POST", "/worker/nope/model-files", token=token, json=good)
    assert r.status_code == 404, r.text
    bad: list[dict[str, Any]] = [
        {**good, "downloaded_bytes": 2**63},
        {**good, "total_bytes": 2**70},
        {**good, "model": "m\x00"},
        {**good, "model": "m" * 513},
        {**good, "model": ""},
        {**good, "paths": ["a\x00b"]},
        {**good, "message": "\x00"},
        {**good, "downloaded_bytes": 1.5e300},
    ]
    for body in bad:
        r = await server.api("POST", f"/worker/{worker_id}/model-files", token=token, json=body)
        assert r.status_code == 422, f"{body!r:.80}: {r.status_code} {r.text}"
    listed = await server.api("GET", "/model-files")
    assert [(f["model"], f["downloaded_bytes"]) for f in listed.json()["items"]] == [("m", 1)]
    r = await server.api("GET", "/workers/a%00b")
    assert r.status_code == 422


async def test_deeply_nested_json_is_a_json_error_not_a_500(server: Running) -> None:
    for depth in (100, 1000, 2000):
        r = await server.client.post(
            "/api/v1/auth/login", content=_deep(depth), headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, f"depth {depth}: {r.status_code} {r.text[:200]}"
        assert r.headers["content-type"] == "application/json"
        assert "nested" in r.text or "invalid JSON" in r.text


async def test_management_bodies_past_the_limit_are_413(server: Running) -> None:
    r = await server.client.post(
        "/api/v1/auth/login",
        content=json.dumps({"username": "admin", "password": "x" * 8000}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert "4096 bytes" in r.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    r = await server.client.post("/api/v1/auth/login", content=chunks())
    assert r.status_code == 413


async def test_gateway_answers_deep_json_and_internal_errors_in_json_and_counts_them(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**server.admin, "content-type": "application/json"}
    deep = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        r = await server.client.post(path, content=deep, headers=headers)
        assert r.status_code == 400, f"{path}: {r.status_code} {r.text[:200]}"
        assert "nested too deeply" in r.json()["error"]["message"]
    gateway = server.app.state.gateway.routes

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    monkeypatch.setattr(gateway, "upstreams", broken)
    r = await server.client.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=headers)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert r.headers["connection"] == "close"
    metrics = (await server.client.get("/metrics")).text
    assert re.search(r'gpustack_gateway_requests_total\{model="",status="400"\} 3\.0', metrics), metrics
    assert re.search(r'gpustack_gateway_requests_total\{model="",status="500"\} 1\.0', metrics), metrics


async def test_unknown_users_cost_a_password_verification(server: Running) -> None:
    hashing: PasswordHashing = server.app.state.services.hashing
    calls: list[str] = []
    real = hashing.verify

    def counting(encoded: str, password: str) -> bool:
        calls.append(encoded)
        return real(encoded, password)

    hashing.verify = counting  # type: ignore[method-assign]
    r = await server.api("POST", "/auth/login", token="", json={"username": "nobody", "password": "guess"})
    assert r.status_code == 401
    r = await server.api("POST", "/auth/login", token="", json={"username": "admin", "password": "guess"})
    assert r.status_code == 401
    assert len(calls) == 2  # unknown user and known user: one argon2 verification each
    assert calls[0].startswith("$argon2id$")


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("12345678", "common"),
        ("password", "common"),
        ("Password", "common"),
        ("\x00" * 8, "NUL"),
        ("abc\ndefgh", "control"),
        ("xx-alice-xx", "username"),
        ("aaaaaaaaaaaa", "repeated"),
        ("short", "at least 8"),
    ],
)
async def test_password_policy(server: Running, password: str, why: str) -> None:
    r = await server.api("POST", "/users", json={"username": "alice", "password": password})
    assert r.status_code == 422, r.text
    assert why in json.dumps(r.json()["detail"])
    r = await server.api("POST", "/users", json={"username": "alice", "password": "tangerine-kettle-47"})
    assert r.status_code == 201
    r = await server.api("PATCH", f"/users/{r.json()['id']}", json={"password": password})
    assert r.status_code == 422, r.text
    assert why in json.dumps(r.json()["detail"])


async def test_deployment_env_is_write_only(server: Running) -> None:
    body = {
        "name": "secret",
        "model": "local:/m.gguf",
        "engine": "fake",
        "replicas": 0,
        "env": {"HF_TOKEN": "hf_supersecret", "OTHER": "1"},
    }
    r = await server.api("POST", "/deployments", json=body)
    assert r.status_code == 201, r.text
    assert "hf_supersecret" not in r.text
    r = await server.api(
        "POST", "/users", json={"username": "reader", "password": "tangerine-kettle-47", "role": "user"}
    )
    login = await server.api(
        "POST", "/auth/login", token="", json={"username": "reader", "password": "tangerine-kettle-47"}
    )
    user_token = login.json()["token"]
    for token in (user_token, server.admin_token):
        for path in ("/deployments/secret", "/deployments"):
            r = await server.api("GET", path, token=token)
            assert r.status_code == 200
            assert "hf_supersecret" not in r.text
            assert "********" in r.text
    # sending the mask back keeps the value; a new value replaces it
    r = await server.api("PATCH", "/deployments/secret", json={"env": {"HF_TOKEN": "********", "NEW": "2"}})
    assert r.status_code == 200, r.text
    store = server.app.state.services.store
    stored = store.get_deployment("secret").spec.env
    assert stored == {"HF_TOKEN": "hf_supersecret", "NEW": "2"}
    # the mask for a variable that is not stored (a duplicated deployment) is refused, not saved
    r = await server.api("PATCH", "/deployments/secret", json={"env": {"OTHER": "********"}})
    assert r.status_code == 422, r.text
    assert "OTHER" in r.text
    copy = {**body, "name": "secret-copy", "env": {"HF_TOKEN": "********"}}
    r = await server.api("POST", "/deployments", json=copy)
    assert r.status_code == 422, r.text
    assert "HF_TOKEN" in r.text
    assert store.get_deployment("secret").spec.env == {"HF_TOKEN": "hf_supersecret", "NEW": "2"}


async def test_timestamps_carry_their_offset_and_bounds_are_in_the_schema(server: Running) -> None:
    users = (await server.api("GET", "/users")).json()["items"]
    assert users[0]["created_at"].endswith(("Z", "+00:00"))
    me = await server.api("POST", "/auth/login", token="", json={"username": "admin", "password": "wrong"})
    assert me.status_code == 401
    doc = (await server.client.get("/api/v1/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/users"]["get"]["parameters"]}
    assert params["limit"]["minimum"] == 1
    assert params["limit"]["maximum"] == 1000
    assert params["offset"]["minimum"] == 0
    assert params["offset"]["maximum"] == INT64_MAX
    login = doc["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert {"200", "401", "408", "413", "422", "429"} <= set(login)
    assert "404" in doc["paths"]["/api/v1/deployments/{deployment}"]["get"]["responses"]


# ---------------------------------------------------------------- over a real socket (uvicorn)


async def _uvicorn(config: Any) -> AsyncIterator[str]:
    import uvicorn
    from server_fake_engine import make_host
    from server_helpers import cheap_hashing

    from gpustack_core.server import create_app
    from gpustack_core.server.serving import uvicorn_config

    app = create_app(config, host=make_host(), hashing=cheap_hashing())
    server = uvicorn.Server(uvicorn_config(config, app, "warning"))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{config.port}"
        finally:
            server.should_exit = True


def _raw_exchange(port: int, request: bytes, timeout: float = 20.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


async def test_x_forwarded_for_does_not_bypass_the_login_limit(tmp_path: Path) -> None:
    import httpx

    from gpustack_core.server.serving import uvicorn_config

    config = fast_config(tmp_path / "data", embedded_worker=False, port=free_port())
    assert uvicorn_config(config, None).proxy_headers is False
    proxied = fast_config(tmp_path / "d2", forwarded_allow_ips="10.0.0.1")
    assert uvicorn_config(proxied, None).proxy_headers is True
    async for base in _uvicorn(config):
        async with httpx.AsyncClient(base_url=base) as client:
            codes = []
            for i in range(8):
                r = await client.post(
                    "/api/v1/auth/login",
                    json={"username": "admin", "password": "wrong"},
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                )
                codes.append(r.status_code)
    assert codes == [401] * 5 + [429] * 3


async def test_a_body_that_does_not_arrive_is_408_and_closes_the_connection(tmp_path: Path) -> None:
    config = fast_config(
        tmp_path / "data", embedded_worker=False, port=free_port(), request_body_timeout_s=0.5
    )
    import httpx

    async for base in _uvicorn(config):
        password = (config.data_dir / "initial_admin_password").read_text().strip()
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        token = r.json()["token"].encode()
        for path in (b"/api/v1/auth/login", b"/v1/chat/completions"):
            request = (
                b"POST " + path + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"authorization: Bearer " + token + b"\r\ncontent-length: 100\r\n\r\n" + b'{"model":'
            )
            answer = await anyio.to_thread.run_sync(_raw_exchange, config.port, request)
            head = answer.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 408"), answer[:300]
            assert b"connection: close" in head


async def test_a_lost_database_connection_is_503_with_retry_after(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    store = server.app.state.services.store

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError(
            "SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=True
        )

    monkeypatch.setattr(store, "list_users", lost)
    r = await server.api("GET", "/users")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
