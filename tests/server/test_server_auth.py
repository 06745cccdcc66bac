"""Auth: every management route needs credentials (401), roles and scopes (403), keys shown once
and stored hashed, expiry, login rate limiting, worker token separation; validation and paging."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from server_helpers import Running, fast_config, start_app

from gpustack_core.server.api import all_endpoints
from gpustack_core.server.security import hash_secret

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in start_app(fast_config(tmp_path / "data", embedded_worker=False)):
        yield running


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_every_protected_route_answers_401_without_credentials(server: Running) -> None:
    protected = [ep for ep in all_endpoints() if ep.auth != "none"]
    assert len(protected) > 20
    for ep in protected:
        r = await server.api(ep.method, _concrete(ep.path), token="", json={})
        assert r.status_code == 401, f"{ep.method} {ep.path}: {r.status_code}"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await server.api(ep.method, _concrete(ep.path), token="gpsk_0123456789abcdef_wrong", json={})
        assert r.status_code == 401, f"{ep.method} {ep.path} with a wrong key: {r.status_code}"


async def test_user_role_key_cannot_manage_users(server: Running) -> None:
    r = await server.api(
        "POST", "/users", json={"username": "alice", "password": "correct horse", "role": "user"}
    )
    assert r.status_code == 201, r.text
    login = await server.api(
        "POST", "/auth/login", token="", json={"username": "alice", "password": "correct horse"}
    )
    alice = login.json()["token"]
    r = await server.api(
        "POST", "/api-keys", token=alice, json={"name": "k", "scopes": ["management", "inference"]}
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    for method, path, body in [
        ("GET", "/users", None),
        ("POST", "/users", {"username": "mallory", "password": "12345678"}),
        ("DELETE", "/users/x", None),
        ("POST", "/deployments", {"name": "d", "model": "local:/x", "engine": "fake"}),
    ]:
        r = await server.api(method, path, token=key, json=body)
        assert r.status_code == 403, f"{method} {path}: {r.status_code} {r.text}"
    assert (await server.api("GET", "/deployments", token=key)).status_code == 200
    assert (await server.api("GET", "/auth/me", token=key)).json()["user"]["username"] == "alice"


async def test_inference_only_key_cannot_manage(server: Running) -> None:
    r = await server.api("POST", "/api-keys", json={"name": "infer", "scopes": ["inference"]})
    key = r.json()["key"]
    r = await server.api("GET", "/workers", token=key)
    assert r.status_code == 403
    assert "management" in r.json()["detail"]


async def test_api_key_is_shown_once_and_stored_hashed(server: Running) -> None:
    r = await server.api("POST", "/api-keys", json={"name": "ci", "scopes": ["management"]})
    assert r.status_code == 201
    key, key_id = r.json()["key"], r.json()["record"]["id"]
    listed = await server.api("GET", "/api-keys")
    assert key not in listed.text
    assert key_id in listed.text
    engine = server.app.state.services.store.engine
    with engine.connect() as c:
        stored = c.execute(
            sa.text("SELECT secret_hash FROM api_keys WHERE id = :i"), {"i": key_id}
        ).scalar_one()
    assert stored == hash_secret(key)
    assert (await server.api("GET", "/workers", token=key)).status_code == 200
    assert (await server.api("DELETE", f"/api-keys/{key_id}")).status_code == 204
    assert (await server.api("GET", "/workers", token=key)).status_code == 401


async def test_expired_key_is_refused(server: Running) -> None:
    r = await server.api(
        "POST", "/api-keys", json={"name": "old", "scopes": ["management"], "expires_in_days": 1}
    )
    key, key_id = r.json()["key"], r.json()["record"]["id"]
    engine = server.app.state.services.store.engine
    with engine.begin() as c:
        c.execute(
            sa.text("UPDATE api_keys SET expires_at = '2000-01-01 00:00:00' WHERE id = :i"), {"i": key_id}
        )
    assert (await server.api("GET", "/workers", token=key)).status_code == 401


async def test_failed_logins_are_rate_limited_per_user_and_address(server: Running) -> None:
    for _ in range(5):
        r = await server.api("POST", "/auth/login", token="", json={"username": "admin", "password": "nope"})
        assert r.status_code == 401
    password = (server.data_dir / "initial_admin_password").read_text().strip()
    r = await server.api("POST", "/auth/login", token="", json={"username": "admin", "password": password})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    other = await server.api("POST", "/auth/login", token="", json={"username": "bob", "password": "x"})
    assert other.status_code == 401


async def test_worker_token_is_not_a_user_key(server: Running) -> None:
    token = (server.data_dir / "token").read_text().strip()
    assert (await server.api("GET", "/workers", token=token)).status_code == 401
    r = await server.api("GET", "/worker/x/assignments", token=server.admin_token)
    assert r.status_code == 401
    r = await server.api("GET", "/worker/x/assignments", token=token)
    assert r.status_code == 404


async def test_validation_errors_are_422_with_field_paths(server: Running) -> None:
    r = await server.api(
        "POST",
        "/deployments",
        json={"name": "bad name!", "model": "nocolon", "engine": "fake", "replicas": -1},
    )
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert ("body", "name") in locs
    assert ("body", "replicas") in locs
    assert ("body", "model") in locs
    r = await server.api(
        "POST", "/deployments", json={"name": "ok", "model": "local:/m.gguf", "engine": "nope"}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "engine"]
    assert "fake" in r.json()["detail"][0]["msg"]
    r = await server.api("GET", "/deployments", params={"limit": "many"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_lists_are_paginated_and_filtered(server: Running) -> None:
    for i in range(5):
        body = {"name": f"dep-{i}", "model": "local:/nonexistent.gguf", "engine": "fake", "replicas": 0}
        assert (await server.api("POST", "/deployments", json=body)).status_code == 201
    r = await server.api("GET", "/deployments", params={"limit": 2, "offset": 1})
    page = r.json()
    assert page["total"] == 5
    assert [d["name"] for d in page["items"]] == ["dep-1", "dep-2"]
    r = await server.api("GET", "/deployments", params={"name": "dep-4"})
    assert [d["name"] for d in r.json()["items"]] == ["dep-4"]
    assert (await server.api("POST", "/deployments", json=body)).status_code == 409


async def test_openapi_document_lists_every_route(server: Running) -> None:
    r = await server.client.get("/api/v1/openapi.json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    for ep in all_endpoints():
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", ep.path)  # no starlette convertors in the document
        assert ep.method.lower() in doc["paths"][f"/api/v1{path}"]
    assert "/api/v1/fallbacks/{model}" in doc["paths"]
    create = doc["paths"]["/api/v1/deployments"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "engine" in doc["components"]["schemas"][ref]["properties"]


async def test_admin_manages_users(server: Running) -> None:
    r = await server.api(
        "POST", "/users", json={"username": "carol", "password": "longenough", "role": "user"}
    )
    user_id = r.json()["id"]
    r = await server.api("PATCH", f"/users/{user_id}", json={"role": "admin"})
    assert r.json()["role"] == "admin"
    r = await server.api("GET", "/users", params={"role": "admin"})
    assert {u["username"] for u in r.json()["items"]} == {"admin", "carol"}
    assert "password" not in r.text
    assert (await server.api("DELETE", f"/users/{user_id}")).status_code == 204
    me = (await server.api("GET", "/auth/me")).json()["user"]["id"]
    assert (await server.api("DELETE", f"/users/{me}")).status_code == 409


async def test_patch_merges_fields_and_validates(server: Running) -> None:
    body = {"name": "p", "model": "local:/m.gguf", "engine": "fake", "replicas": 0}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201
    r = await server.api("PATCH", "/deployments/p", json={"extra_args": ["--x", "1"], "replicas": 2})
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert spec["extra_args"] == ["--x", "1"]
    assert spec["replicas"] == 2
    assert spec["engine"] == "fake"
    r = await server.api("PATCH", "/deployments/p", json={"extra_args": ["--port", "1"]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "extra_args"]
    r = await server.api("PATCH", "/deployments/p", json={"name": "renamed"})
    assert r.status_code == 422
    assert (await server.api("PATCH", "/deployments/nope", json={"replicas": 1})).status_code == 404
