"""The API pieces the console uses, in process: cookie sessions and CSRF, changing a password,
deployment evaluation (estimate + scheduler dry run), the catalog, the worker join command, and
the console's page routing (login redirect, admin-only pages)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from server_helpers import Running, fast_config, start_app

from gpustack_core.server.session import csrf_token_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in start_app(fast_config(tmp_path / "data")):
        yield running


async def _session(server: Running, username: str, password: str) -> tuple[httpx.Response, str]:
    r = await server.client.post("/api/v1/auth/session", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r, r.cookies["gpustack_session"]


async def test_session_cookie_authenticates_and_writes_need_the_csrf_token(server: Running) -> None:
    password = (server.data_dir / "initial_admin_password").read_text().strip()
    r, token = await _session(server, "admin", password)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert r.json()["password_change_required"] is True
    assert r.json()["csrf_token"] == csrf_token_for(token)
    server.client.cookies.set("gpustack_session", token)
    try:
        me = await server.client.get("/api/v1/auth/me")
        assert me.status_code == 200
        assert me.json()["user"]["username"] == "admin"
        assert me.json()["password_change_required"] is True
        body = {"name": "k"}
        forged = await server.client.post("/api/v1/api-keys", json=body)
        assert forged.status_code == 403
        wrong = await server.client.post("/api/v1/api-keys", json=body, headers={"X-CSRF-Token": "0" * 32})
        assert wrong.status_code == 403
        good = await server.client.post(
            "/api/v1/api-keys", json=body, headers={"X-CSRF-Token": csrf_token_for(token)}
        )
        assert good.status_code == 201, good.text
        # the gateway takes the cookie too
        models = await server.client.get("/v1/models")
        assert models.status_code == 200
        # logout revokes the session and clears the cookie
        out = await server.client.delete(
            "/api/v1/auth/session", headers={"X-CSRF-Token": csrf_token_for(token)}
        )
        assert out.status_code == 204
        assert "Max-Age=0" in out.headers["set-cookie"]
        server.client.cookies.set("gpustack_session", token)
        assert (await server.client.get("/api/v1/auth/me")).status_code == 401
    finally:
        server.client.cookies.clear()


async def test_cookie_login_takes_json_only(server: Running) -> None:
    password = (server.data_dir / "initial_admin_password").read_text().strip()
    form = f'{{"username": "admin", "password": "{password}"}}'
    r = await server.client.post("/api/v1/auth/session", content=form, headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert "set-cookie" not in r.headers


async def test_bearer_requests_ignore_the_cookie_and_need_no_csrf_token(server: Running) -> None:
    server.client.cookies.set("gpustack_session", "gpsk_0000000000000000_not-a-session")
    try:
        r = await server.client.post("/api/v1/api-keys", json={"name": "scripted"}, headers=server.admin)
        assert r.status_code == 201, r.text
    finally:
        server.client.cookies.clear()


async def test_password_change_clears_the_first_login_mark(server: Running) -> None:
    password = (server.data_dir / "initial_admin_password").read_text().strip()
    wrong = await server.api(
        "POST", "/auth/password", json={"current_password": "x", "new_password": "n" * 10}
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "current_password"]
    same = await server.api(
        "POST", "/auth/password", json={"current_password": password, "new_password": password}
    )
    assert same.status_code == 422
    ok = await server.api(
        "POST", "/auth/password", json={"current_password": password, "new_password": "brand-new-pass"}
    )
    assert ok.status_code == 204, ok.text
    assert (await server.api("GET", "/auth/me")).json()["password_change_required"] is False
    login = await server.client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "brand-new-pass"}
    )
    assert login.json()["password_change_required"] is False
    # a user an admin created, or whose password an admin reset, must change it
    bob = (await server.api("POST", "/users", json={"username": "bob", "password": "first-login-pw"})).json()
    first = await server.client.post(
        "/api/v1/auth/login", json={"username": "bob", "password": "first-login-pw"}
    )
    assert first.json()["password_change_required"] is True
    bob_token = first.json()["token"]
    changed = await server.api(
        "POST",
        "/auth/password",
        token=bob_token,
        json={"current_password": "first-login-pw", "new_password": "my-own-secret-9"},
    )
    assert changed.status_code == 204
    assert (await server.api("GET", "/auth/me", token=bob_token)).json()["password_change_required"] is False
    await server.api("PATCH", f"/users/{bob['id']}", json={"password": "reset-by-admin"})
    assert (await server.api("GET", "/auth/me", token=bob_token)).json()["password_change_required"] is True


async def test_evaluation_names_the_worker_or_says_why_not(server: Running, tiny_model: Path) -> None:
    async def worker_ready() -> bool:
        r = await server.api("GET", "/workers")
        return any(w["state"] == "ready" for w in r.json()["items"])

    await server.wait_for(worker_ready, what="embedded worker ready")
    body = {"name": "tiny", "model": f"local:{tiny_model}", "engine": "fake"}
    r = await server.api("POST", "/deployment-evaluations", json=body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["fits"] is True
    assert result["placement"]["worker"] == "worker-a"
    assert "worker-a" in result["summary"]
    assert result["estimate"]["claims"]
    assert result["ready_workers"] == ["worker-a"]
    # nothing was created
    assert (await server.api("GET", "/deployments")).json()["total"] == 0

    gpus = {**body, "gpus_per_replica": 2, "allow_cpu_offload": False}
    r = await server.api("POST", "/deployment-evaluations", json=gpus)
    assert r.status_code == 200, r.text
    refused = r.json()
    assert refused["fits"] is False
    assert refused["placement"] is None
    assert refused["explanation"]["rejections"], refused
    assert all(x["candidate"].startswith("worker-a") for x in refused["explanation"]["rejections"])

    missing = await server.api(
        "POST", "/deployment-evaluations", json={**body, "model": "local:/no/such.gguf"}
    )
    assert missing.status_code == 200
    assert missing.json()["fits"] is False
    assert "cannot estimate" in missing.json()["summary"]

    unknown = await server.api("POST", "/deployment-evaluations", json={**body, "engine": "nope"})
    assert unknown.status_code == 422
    assert "unknown engine" in unknown.json()["detail"][0]["msg"]


async def test_catalog_ships_entries_and_admins_extend_or_replace_it(server: Running) -> None:
    shipped = (await server.api("GET", "/catalog")).json()["items"]
    assert {"qwen3-0.6b", "bge-m3", "bge-reranker-v2-m3"} <= {e["id"] for e in shipped}
    assert {e["category"] for e in shipped} >= {"llm", "embedding", "rerank", "image", "speech_to_text"}
    entry = {"id": "mine", "name": "Mine", "category": "llm", "engine": "fake", "model": "local:/m.gguf"}
    r = await server.api("PUT", "/catalog", json={"entries": [entry]})
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == len(shipped) + 1
    r = await server.api("PUT", "/catalog", json={"entries": [entry], "mode": "replace"})
    assert [e["id"] for e in r.json()["items"]] == ["mine"]
    bad = await server.api("PUT", "/catalog", json={"entries": [{**entry, "model": "no-source"}]})
    assert bad.status_code == 422
    both = await server.api("PUT", "/catalog", json={"entries": [entry], "url": "http://127.0.0.1:1/x"})
    assert both.status_code == 422
    unreachable = await server.api("PUT", "/catalog", json={"url": "http://127.0.0.1:1/catalog.json"})
    assert unreachable.status_code == 422
    assert "cannot fetch" in unreachable.json()["detail"][0]["msg"]
    assert (await server.api("DELETE", "/catalog")).status_code == 204
    assert len((await server.api("GET", "/catalog")).json()["items"]) == len(shipped)


async def test_join_command_and_console_routing(server: Running) -> None:
    join = await server.api("GET", "/worker-join-command")
    assert join.status_code == 200
    token = (server.data_dir / "token").read_text().strip()
    assert join.json()["command"] == f"gpustack-core worker --server-url http://test --token {token}"
    r = await server.client.get("/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/"
    assert (await server.client.get("/login")).status_code == 200
    css = await server.client.get("/console-static/console.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]
    # a signed-in user who is not an admin gets 403 on admin pages
    await server.api("POST", "/users", json={"username": "carol", "password": "first-login-pw"})
    _, token = await _session(server, "carol", "first-login-pw")
    server.client.cookies.set("gpustack_session", token)
    try:
        first = await server.client.get("/users", follow_redirects=False)
        assert first.headers["location"] == "/account/password?required=1"
        await server.client.post(
            "/api/v1/auth/password",
            json={"current_password": "first-login-pw", "new_password": "my-own-secret-9"},
            headers={"X-CSRF-Token": csrf_token_for(token)},
        )
        assert (await server.client.get("/users")).status_code == 403
        assert (await server.client.get("/")).status_code == 200
        assert (await server.client.get("/api/v1/worker-join-command")).status_code == 403
    finally:
        server.client.cookies.clear()


async def test_patch_takes_every_field_the_edit_form_sends(server: Running, tiny_model: Path) -> None:
    body = {"name": "edited", "model": f"local:{tiny_model}", "engine": "fake", "replicas": 0}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201
    changes = {
        "category": "embedding",
        "label_selector": [{"key": "zone", "operator": "equals", "values": ["a"]}],
        "gpu_selector": [{"worker": "worker-a", "accelerator": "cpu", "index": 0}],
        "allow_cpu_offload": False,
        "allow_multi_worker": True,
    }
    r = await server.api("PATCH", "/deployments/edited", json=changes)
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert spec["category"] == "embedding"
    assert spec["label_selector"] == changes["label_selector"]
    assert spec["gpu_selector"] == changes["gpu_selector"]
    assert spec["allow_cpu_offload"] is False
    assert spec["allow_multi_worker"] is True
    bad = await server.api("PATCH", "/deployments/edited", json={"category": "poetry"})
    assert bad.status_code == 422


async def test_model_resolution_lists_files_and_quantizations(server: Running, tmp_path: Path) -> None:
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    tiny_model = write_llama_gguf(tmp_path / "tiny-Q8_0.gguf", TinyLlamaSpec.tiny())
    r = await server.api("POST", "/model-resolutions", json={"model": f"local:{tiny_model}"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["format"] == "gguf"
    assert [f["path"] for f in answer["files"]] == [tiny_model.name]
    assert answer["total_size_bytes"] == tiny_model.stat().st_size
    assert answer["quantizations"] == ["Q8_0"]
    missing = await server.api("POST", "/model-resolutions", json={"model": "local:/no/such/model.gguf"})
    assert missing.status_code == 422
    bad = await server.api("POST", "/model-resolutions", json={"model": "nosource"})
    assert bad.status_code == 422
    unknown = await server.api("POST", "/model-resolutions", json={"model": "nope:x/y"})
    assert unknown.status_code == 422
    assert "unknown source" in unknown.json()["detail"][0]["msg"]
