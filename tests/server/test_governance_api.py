"""Governance through the server's REST API: teams, model access (``/v1/models`` lists only what a
key may call; keys narrow their owner's access), limits, fallback chains, usage buckets by team."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from server_helpers import Running, fast_config, start_app

from gpustack_core.gateway import UsageRecord

pytestmark = pytest.mark.anyio


async def _login(server: Running, username: str) -> str:
    r = await server.api(
        "POST", "/auth/login", token="", json={"username": username, "password": "pw-123456789"}
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


async def _models(server: Running, key: str) -> set[str]:
    r = await server.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return {m["id"] for m in r.json()["data"]}


async def test_teams_access_limits_fallbacks_and_usage_buckets(
    tmp_path: Path, database_url: str | None, tiny_model: Path
) -> None:
    config = fast_config(tmp_path / "data", database_url, embedded_worker=False)
    server: Running
    async for server in start_app(config):
        for name in ("alpha", "beta", "gamma"):
            body = {"name": name, "model": f"local:{tiny_model}", "engine": "fake"}
            assert (await server.api("POST", "/deployments", json=body)).status_code == 201
        users: dict[str, str] = {}
        for name in ("alice", "bob"):
            r = await server.api("POST", "/users", json={"username": name, "password": "pw-123456789"})
            users[name] = r.json()["id"]

        r = await server.api("POST", "/teams", json={"name": "research", "description": "the lab"})
        assert r.status_code == 201, r.text
        team = r.json()
        assert (await server.api("POST", "/teams", json={"name": "research"})).status_code == 409
        r = await server.api("PUT", f"/teams/research/members/{users['alice']}")
        assert r.status_code == 200
        assert r.json()["members"] == [users["alice"]]
        assert (await server.api("PUT", "/teams/research/members/nobody")).status_code == 404
        r = await server.api(
            "POST", "/model-access", json={"subject_kind": "team", "subject_id": team["id"], "model": "alpha"}
        )
        assert r.status_code == 201, r.text

        alice = await _login(server, "alice")
        r = await server.api(
            "POST", "/api-keys", token=alice, json={"name": "k", "allowed_models": ["alpha", "beta"]}
        )
        alice_key = r.json()["key"]
        bob = await _login(server, "bob")
        bob_key = (await server.api("POST", "/api-keys", token=bob, json={"name": "k"})).json()["key"]

        async def listed(server: Running = server, key: str = bob_key) -> bool:
            return await _models(server, key) == {"alpha", "beta", "gamma"}

        await server.wait_for(listed, what="the route table lists the deployments")
        assert await _models(server, alice_key) == {"alpha"}  # the key narrows the team's access
        chat: dict[str, Any] = {"model": "beta", "messages": [{"role": "user", "content": "hi"}]}
        r = await server.client.post(
            "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {alice_key}"}
        )
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "model_not_allowed"
        # a rule for bob restricts bob at once (this server clears its key cache)
        r = await server.api(
            "POST",
            "/model-access",
            json={"subject_kind": "user", "subject_id": users["bob"], "model": "gamma"},
        )
        assert await _models(server, bob_key) == {"gamma"}
        rules = (await server.api("GET", "/model-access")).json()["items"]
        assert {(x["subject_kind"], x["model"]) for x in rules} == {("team", "alpha"), ("user", "gamma")}
        r = await server.api(
            "DELETE",
            "/model-access",
            params={"subject_kind": "user", "subject_id": users["bob"], "model": "gamma"},
        )
        assert r.status_code == 204
        assert await _models(server, bob_key) == {"alpha", "beta", "gamma"}
        assert (await server.api("GET", "/teams", token=alice)).status_code == 403  # admins only

        limit = {"subject_kind": "team", "subject_id": "research", "metric": "tokens", "period": "day"}
        r = await server.api("PUT", "/limits", json={**limit, "max_value": 1000})
        assert r.status_code == 200, r.text
        assert r.json()["subject_id"] == team["id"]  # a team's name is accepted and stored as its id
        again = await server.api("PUT", "/limits", json={**limit, "max_value": 2000})
        assert again.json()["id"] == r.json()["id"]
        assert again.json()["max_value"] == 2000
        bad = {**limit, "subject_kind": "user", "subject_id": "nobody", "max_value": 1}
        assert (await server.api("PUT", "/limits", json=bad)).status_code == 404
        bad = {**limit, "subject_kind": "global", "subject_id": "x", "max_value": 1}
        assert (await server.api("PUT", "/limits", json=bad)).status_code == 422
        bad = {**limit, "period": "week", "max_value": 1}
        assert (await server.api("PUT", "/limits", json=bad)).status_code == 422
        assert len((await server.api("GET", "/limits")).json()["items"]) == 1
        assert (await server.api("DELETE", f"/limits/{r.json()['id']}")).status_code == 204
        assert (await server.api("DELETE", f"/limits/{r.json()['id']}")).status_code == 404

        r = await server.api("PUT", "/fallbacks/alpha", json={"fallbacks": ["beta", "gamma"]})
        assert r.status_code == 200
        assert r.json() == {"model": "alpha", "fallbacks": ["beta", "gamma"]}
        assert server.app.state.gateway.fallbacks.fallbacks("alpha") == ("beta", "gamma")
        assert (await server.api("PUT", "/fallbacks/alpha", json={"fallbacks": ["alpha"]})).status_code == 422
        assert (await server.api("GET", "/fallbacks")).json()["items"] == [r.json()]

        usage = server.app.state.gateway.usage
        today = dt.datetime.now(dt.timezone.utc).date()
        await usage.record(UsageRecord(users["alice"], None, "alpha", today, 10, 5, 1))
        await usage.record(UsageRecord(users["bob"], None, "beta", today, 1, 1, 1))
        r = await server.api("GET", "/usage/buckets", params={"bucket": "day", "group_by": "team,model"})
        assert r.status_code == 200, r.text
        assert [(b["team_id"], b["model"], b["prompt_tokens"]) for b in r.json()["items"]] == [
            (team["id"], "alpha", 10)
        ]
        r = await server.api("GET", "/usage/buckets", token=bob, params={"group_by": "user"})
        assert [(b["user_id"], b["requests"]) for b in r.json()["items"]] == [(users["bob"], 1)]
        bad_group = await server.api("GET", "/usage/buckets", params={"group_by": "colour"})
        assert bad_group.status_code == 422

        assert (await server.api("DELETE", "/teams/research")).status_code == 204
        assert await _models(server, alice_key) == {"alpha", "beta"}  # only the key's own list remains
