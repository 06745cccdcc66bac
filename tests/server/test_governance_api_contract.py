"""The governance and login routes answer what the OpenAPI document says (found by ``nox -s fuzz``):
timestamps carry their UTC offset, limits take only integers, a missing subject is a documented 404,
an unparsable catalog URL is 422, and every password login route documents 429 with Retry-After."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from server_helpers import Running, fast_config, start_app

pytestmark = pytest.mark.anyio


async def test_governance_answers_match_the_document(tmp_path: Path, database_url: str | None) -> None:
    config = fast_config(tmp_path / "data", database_url, embedded_worker=False)
    server: Running
    async for server in start_app(config):
        r = await server.api("POST", "/teams", json={"name": "ops", "description": "x" * 2000})
        assert r.status_code == 201, r.text
        assert dt.datetime.fromisoformat(r.json()["created_at"]).utcoffset() == dt.timedelta(0)
        r = await server.api("GET", "/teams")
        assert dt.datetime.fromisoformat(r.json()["items"][0]["created_at"]).tzinfo is not None

        limit = {"subject_kind": "global", "metric": "tokens", "period": "day", "max_value": False}
        r = await server.api("PUT", "/limits", json=limit)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "max_value"]
        r = await server.api("PUT", "/limits", json={**limit, "max_value": 10, "subject_kind": "user"})
        assert r.status_code == 422, r.text  # an empty subject_id is a mistake, not a missing user
        r = await server.api(
            "PUT", "/limits", json={**limit, "max_value": 10, "subject_kind": "user", "subject_id": "nobody"}
        )
        assert r.status_code == 404, r.text
        r = await server.api(
            "POST", "/model-access", json={"subject_kind": "user", "subject_id": "nobody", "model": "m" * 255}
        )
        assert r.status_code == 404, r.text
        assert (await server.api("PUT", "/fallbacks/" + "m" * 256, json={})).status_code == 422
        r = await server.api("PUT", "/fallbacks/a", json={"fallbacks": ["b" * 256]})
        assert r.status_code == 422, r.text

        # a URL httpx cannot even parse is the client's mistake (422), not a 500
        r = await server.api("PUT", "/catalog", json={"mode": "replace", "url": "https://\u00a5\u0017\\"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "url"]

        doc = (await server.api("GET", "/openapi.json", token="")).json()
        paths = doc["paths"]
        for route in ("/api/v1/auth/login", "/api/v1/auth/session"):
            answer = paths[route]["post"]["responses"]["429"]
            assert answer["headers"]["Retry-After"]["required"] is True
        assert "415" in paths["/api/v1/auth/session"]["post"]["responses"]
        assert "404" in paths["/api/v1/limits"]["put"]["responses"]
        assert {"404", "502"} <= set(paths["/api/v1/auth/oidc/login"]["get"]["responses"])
        assert "404" in paths["/api/v1/auth/oidc/callback"]["get"]["responses"]
