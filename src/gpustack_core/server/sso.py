"""Single sign-on with OpenID Connect: the authorization code flow with PKCE (S256).

``GET /api/v1/auth/oidc/login`` redirects to the provider with a fresh ``state``, ``nonce`` and
code challenge; the provider sends the browser back to ``/api/v1/auth/oidc/callback`` with a code,
which the server exchanges (with the code verifier and its client secret) for an ID token. The ID
token's signature is checked against the provider's JWKS and its ``iss``, ``aud``, ``exp`` and
``nonce`` claims against what was sent. A user is created on first login (named by
``username_claim``), put into the teams named by ``teams_claim`` (created when missing), and gets a
session token as from a password login.

Pending logins (state -> verifier, nonce) live in this server process's memory for
``login_ttl_s``: the callback must reach the server process that started the login.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

__all__ = ["OIDCClient", "OIDCError", "OIDCSettings"]


class OIDCError(Exception):
    """The login could not complete; the message says why (shown to the user)."""


@dataclass(frozen=True)
class OIDCSettings:
    """What the server needs to know about its OpenID provider.

    ``issuer`` is the provider's issuer URL (its ``/.well-known/openid-configuration`` is read);
    ``teams_claim`` names the ID token (or userinfo) claim listing the user's teams;
    ``username_claim`` names the claim used as the username (``sub`` when absent).
    """

    issuer: str
    client_id: str
    client_secret: str
    scopes: str = "openid profile email"
    username_claim: str = "preferred_username"
    teams_claim: str = "groups"
    login_ttl_s: float = 600.0


@dataclass(frozen=True)
class _Pending:
    verifier: str
    nonce: str
    redirect_uri: str
    expires: float


class OIDCClient:
    """The relying party: discovery, authorization URLs, code exchange and ID token checks."""

    def __init__(self, settings: OIDCSettings, max_pending: int = 10_000) -> None:
        """Use ``settings``; at most ``max_pending`` logins wait for their callback at once."""
        self.settings = settings
        self.max_pending = max_pending
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (read once)."""
        if self._metadata is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            data = await self._get_json(url)
            if data.get("issuer") != self.settings.issuer:
                raise OIDCError(
                    f"the provider at {url} says its issuer is {data.get('issuer')!r}, "
                    f"not {self.settings.issuer!r}"
                )
            self._metadata = data
        return self._metadata

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(url)
        except httpx.HTTPError as exc:
            raise OIDCError(f"cannot reach the OpenID provider at {url}: {exc}") from exc
        if r.status_code != 200:
            raise OIDCError(f"the OpenID provider answered {r.status_code} for {url}")
        data: dict[str, Any] = r.json()
        return data

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            meta = await self.metadata()
            self._keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
        return self._keys

    async def authorization_url(self, redirect_uri: str) -> str:
        """Start a login: the provider URL to send the browser to."""
        meta = await self.metadata()
        now = time.monotonic()
        while self._pending and next(iter(self._pending.values())).expires < now:
            self._pending.popitem(last=False)
        if len(self._pending) >= self.max_pending:
            raise OIDCError("too many logins are waiting for their callback; retry in a few minutes")
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        self._pending[state] = _Pending(verifier, nonce, redirect_uri, now + self.settings.login_ttl_s)
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{meta['authorization_endpoint']}?{urllib.parse.urlencode(query)}"

    async def complete(self, code: str, state: str) -> dict[str, Any]:
        """Finish a login: exchange ``code`` and return the ID token's verified claims."""
        pending = self._pending.pop(state, None)
        if pending is None or pending.expires < time.monotonic():
            raise OIDCError("this login is unknown or expired (state mismatch); start again")
        meta = await self.metadata()
        s = self.settings
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.post(
                    meta["token_endpoint"],
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": pending.redirect_uri,
                        "code_verifier": pending.verifier,
                    },
                    auth=(s.client_id, s.client_secret),
                )
        except httpx.HTTPError as exc:
            raise OIDCError(f"cannot reach the provider's token endpoint: {exc}") from exc
        if r.status_code != 200:
            raise OIDCError(f"the provider refused the code ({r.status_code}): {r.text[:300]}")
        id_token = r.json().get("id_token")
        if not isinstance(id_token, str):
            raise OIDCError("the provider's token response has no id_token")
        claims = await self._verify(id_token, pending.nonce)
        if s.teams_claim not in claims and "userinfo_endpoint" in meta:
            claims = {
                **await self._userinfo(meta["userinfo_endpoint"], r.json().get("access_token")),
                **claims,
            }
        return claims

    async def _userinfo(self, url: str, access_token: Any) -> dict[str, Any]:
        if not isinstance(access_token, str):
            return {}
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(url, headers={"Authorization": f"Bearer {access_token}"})
        return dict(r.json()) if r.status_code == 200 else {}

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        s = self.settings
        algorithms = (await self.metadata()).get("id_token_signing_alg_values_supported") or ["RS256"]
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), algorithms=algorithms)
            except JoseError:  # the provider may have rotated its keys
                token = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=algorithms)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": s.issuer},
                aud={"essential": True, "value": s.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise OIDCError(f"the ID token is not valid: {exc}") from exc
        return dict(token.claims)

    def username(self, claims: dict[str, Any]) -> str:
        """The username for ``claims``."""
        value = claims.get(self.settings.username_claim) or claims["sub"]
        return str(value)[:64]

    def teams(self, claims: dict[str, Any]) -> list[str]:
        """The team names in ``claims`` (a list, or one string; none when absent)."""
        value = claims.get(self.settings.teams_claim)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(v) for v in value if isinstance(v, (str, int)) and str(v)]
        return []
