"""Single sign-on against a real OpenID Provider: the npm package ``oidc-provider`` (installed with
npm into a cache directory on first use) run by Node.js. The test logs in through the provider's
own login and consent pages like a browser, and checks the user created on first login, the teams
from the ``groups`` claim, a team-restricted model refused, and password login switched off."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from governed_gateway import Process, start_process
from server_helpers import Running, fast_config, free_port, start_app

pytestmark = pytest.mark.anyio

OIDC_PROVIDER_VERSION = "9"
CALLBACK = "http://test/api/v1/auth/oidc/callback"


@pytest.fixture(scope="session")
def oidc_provider_dir() -> Path:
    """A directory with ``oidc-provider`` installed by npm (reused across runs)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to run the OpenID provider")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpustack-core-tests"
    target = cache / f"oidc-provider-{OIDC_PROVIDER_VERSION}"
    if not (target / "node_modules" / "oidc-provider" / "package.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(target),
             f"oidc-provider@{OIDC_PROVIDER_VERSION}"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"npm install oidc-provider failed: {result.stderr[-2000:]}"
    shutil.copy(Path(__file__).parent / "oidc" / "provider.mjs", target / "provider.mjs")
    return target


@pytest.fixture
def provider(oidc_provider_dir: Path) -> Iterator[Process]:
    port = free_port()
    started = start_process(
        ["node", str(oidc_provider_dir / "provider.mjs"), str(port), CALLBACK],
        "/.well-known/openid-configuration",
    )
    yield started
    started.stop()


def _form(page: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of the page's first form."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    assert action is not None, page[:500]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    return html.unescape(action.group(1)), fields


async def _browser_login(authorize_url: str, username: str) -> str:
    """Go through the provider's login and consent pages; return the callback URL it redirects to."""
    async with httpx.AsyncClient(timeout=20) as browser:
        url, method, data = authorize_url, "GET", None
        for _ in range(20):
            r = await browser.request(method, url, data=data)
            if r.is_redirect:
                location = r.headers["location"]
                if location.startswith(CALLBACK):
                    return location
                url, method, data = str(r.url.join(location)), "GET", None
                continue
            assert r.status_code == 200, r.text[:500]
            action, fields = _form(r.text)
            if 'name="login"' in r.text:
                fields.update(login=username, password="any")
            url, method, data = str(r.url.join(action)), "POST", fields
    raise AssertionError("the provider never redirected back")


async def _sso_login(server: Running, username: str) -> dict[str, Any]:
    r = await server.client.get("/api/v1/auth/oidc/login", follow_redirects=False)
    assert r.status_code == 302, r.text
    callback = await _browser_login(r.headers["location"], username)
    r = await server.client.get(callback.removeprefix("http://test"))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_oidc_login_creates_the_user_in_the_claimed_team(
    tmp_path: Path, provider: Process, tiny_model: Path
) -> None:
    config = fast_config(
        tmp_path / "data",
        embedded_worker=False,
        oidc_issuer=provider.url,
        oidc_client_id="gpustack",
        oidc_client_secret="gpustack-secret",
        oidc_scopes="openid profile groups",
    )
    server: Running
    async for server in start_app(config):
        for name in ("alpha", "beta"):
            body = {"name": name, "model": f"local:{tiny_model}", "engine": "fake"}
            assert (await server.api("POST", "/deployments", json=body)).status_code == 201
        team = (await server.api("POST", "/teams", json={"name": "research"})).json()
        rule = {"subject_kind": "team", "subject_id": team["id"], "model": "alpha"}
        assert (await server.api("POST", "/model-access", json=rule)).status_code == 201

        login = await _sso_login(server, "alice")
        assert login["user"]["username"] == "alice"
        assert login["user"]["role"] == "user"
        token = login["token"]
        me = await server.api("GET", "/auth/me", token=token)
        assert me.json()["user"]["id"] == login["user"]["id"]
        teams = {t["name"]: t["members"] for t in (await server.api("GET", "/teams")).json()["items"]}
        assert teams == {"research": [login["user"]["id"]]}

        headers = {"Authorization": f"Bearer {token}"}

        async def alpha_listed(server: Running = server, headers: dict[str, str] = headers) -> bool:
            r = await server.client.get("/v1/models", headers=headers)
            return [m["id"] for m in r.json()["data"]] == ["alpha"]

        await server.wait_for(alpha_listed, what="the team's model listed")
        chat = {"model": "beta", "messages": [{"role": "user", "content": "hi"}]}
        r = await server.client.post("/v1/chat/completions", json=chat, headers=headers)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "model_not_allowed"

        # a second login finds the same user; bob's claim creates the missing team "ops"
        assert (await _sso_login(server, "alice"))["user"]["id"] == login["user"]["id"]
        bob = await _sso_login(server, "bob")
        teams = {t["name"]: t["members"] for t in (await server.api("GET", "/teams")).json()["items"]}
        assert teams["ops"] == [bob["user"]["id"]]
        assert bob["user"]["id"] in teams["research"]

        # a forged or replayed callback is refused
        r = await server.client.get("/api/v1/auth/oidc/callback", params={"code": "x", "state": "forged"})
        assert r.status_code == 401
        assert "state" in r.json()["detail"]

        # a local user of the same name is never taken over by an SSO login
        local = {"username": "carol", "password": "pw-123456789"}
        assert (await server.api("POST", "/users", json=local)).status_code == 201
        r = await server.client.get("/api/v1/auth/oidc/login", follow_redirects=False)
        callback = await _browser_login(r.headers["location"], "carol")
        r = await server.client.get(callback.removeprefix("http://test"))
        assert r.status_code == 409
        assert "local user" in r.json()["detail"]

        # with local login off, passwords are refused; SSO still works
        services = server.app.state.services
        services.config = dataclasses.replace(services.config, local_login=False)
        r = await server.api("POST", "/auth/login", token="", json=local)
        assert r.status_code == 403
        assert "oidc" in r.json()["detail"]
        assert (await _sso_login(server, "alice"))["user"]["username"] == "alice"


async def test_without_sso_configured_the_routes_say_so(tmp_path: Path) -> None:
    async for server in start_app(fast_config(tmp_path / "data", embedded_worker=False)):
        r = await server.client.get("/api/v1/auth/oidc/login", follow_redirects=False)
        assert r.status_code == 404
        assert "not configured" in r.json()["detail"]
