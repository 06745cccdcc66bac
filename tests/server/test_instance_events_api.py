"""``GET /api/v1/instances/{id}/events``: a deploy's timeline from pending through scheduled to
running, in order with UTC timestamps; 404 for an unknown or deleted instance; documented in the
OpenAPI document; a non-admin is answered as for the instance itself. On every configured database."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import Running, fast_config, start_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path, database_url: str | None) -> AsyncIterator[Running]:
    async for running in start_app(fast_config(tmp_path / "data", database_url)):
        yield running


async def test_a_deploy_produces_its_timeline_in_order(server: Running, tiny_model: Path) -> None:
    body = {"name": "tiny", "model": f"local:{tiny_model}", "engine": "fake", "replicas": 1}
    r = await server.api("POST", "/deployments", json=body)
    assert r.status_code == 201, r.text

    async def running() -> dict[str, Any] | None:
        items = (await server.api("GET", "/instances", params={"deployment": "tiny"})).json()["items"]
        return items[0] if items and items[0]["state"] == "running" else None

    instance = await server.wait_for(running, what="instance running")
    r = await server.api("GET", f"/instances/{instance['id']}/events")
    assert r.status_code == 200, r.text
    page = r.json()
    events = page["items"]
    assert page["total"] == len(events)
    states = [e["state"] for e in events]
    assert states[0] == "pending"
    assert events[0]["message"] == "waiting to be scheduled"
    assert states[-1] == "running"
    assert "scheduled" in states
    assert states.index("pending") < states.index("scheduled") < states.index("running")
    assert events[states.index("scheduled")]["message"] == "placed on worker-a"
    # whatever the worker went through in between (downloading, starting, ...) is in order, no
    # repeats; a pending reason that changed before placement is its own event (store behaviour)
    pairs = [(e["state"], e["message"]) for e in events]
    assert all(a != b for a, b in itertools.pairwise(pairs)), pairs
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert all(e["instance_id"] == instance["id"] for e in events)
    assert all(e["at"].endswith("Z") for e in events), events
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert events[-1]["at"] == instance["state_changed_at"]

    # a non-admin user is answered exactly as for the instance itself
    password = "first-login-pw"
    assert (
        await server.api("POST", "/users", json={"username": "viewer", "password": password})
    ).status_code == 201
    login = await server.client.post("/api/v1/auth/login", json={"username": "viewer", "password": password})
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    own = await server.api("GET", f"/instances/{instance['id']}", token=token)
    timeline = await server.api("GET", f"/instances/{instance['id']}/events", token=token)
    assert timeline.status_code == own.status_code == 200, (own.text, timeline.text)
    assert timeline.json()["items"] == events
    assert (await server.api("GET", f"/instances/{instance['id']}/events", token="")).status_code == 401

    # deleting the deployment removes the instance and its timeline
    assert (await server.api("DELETE", "/deployments/tiny")).status_code == 202

    async def gone() -> bool:
        return (await server.api("GET", f"/instances/{instance['id']}/events")).status_code == 404

    await server.wait_for(gone, what="instance deleted")


async def test_unknown_instance_is_404_and_the_endpoint_is_documented(server: Running) -> None:
    r = await server.api("GET", "/instances/no-such-instance/events")
    assert r.status_code == 404
    assert "no-such-instance" in r.json()["detail"]
    doc = (await server.client.get("/api/v1/openapi.json")).json()
    op = doc["paths"]["/api/v1/instances/{instance_id}/events"]["get"]
    assert {"200", "401", "404"} <= set(op["responses"])
    item = op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["items"]["items"]
    assert item["$ref"].endswith("/InstanceEventRecord")
