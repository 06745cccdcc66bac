"""Single sign-on: ``/auth/oidc/login`` redirects to the OpenID provider, ``/auth/oidc/callback``
finishes the login and answers with a session token (see :mod:`gpustack_core.server.sso`)."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from gpustack_core.server.sso import OIDCClient, OIDCError
from gpustack_core.server.store import ConflictError, Store
from gpustack_core.server.store.governance import GovernanceStore
from gpustack_core.server.store.records import UserRecord

from ._framework import ApiError, Endpoint, Query, Request
from .auth_routes import LoginResponse, open_session

__all__ = ["ENDPOINTS", "provision_user"]

_CALLBACK = "/auth/oidc/callback"
_NOT_CONFIGURED = "single sign-on is not configured on this server"


def _client(req: Request) -> OIDCClient:
    sso = req.services.sso
    if not isinstance(sso, OIDCClient):
        raise ApiError(404, "single sign-on is not configured on this server (serve --oidc-issuer ...)")
    return sso


def _callback_url(req: Request) -> str:
    configured = req.services.config.oidc_redirect_url
    if configured:
        return configured
    login_url = str(req.raw.url.replace(query=""))
    return login_url[: login_url.rindex("/auth/oidc/login")] + _CALLBACK


def provision_user(store: Store, username: str, subject: str, team_names: list[str]) -> UserRecord:
    """The user of an SSO login, created on first login, put into exactly ``team_names`` (blocking).

    SSO users have no password: their stored hash is a marker naming their subject, which no
    password matches. A local user of the same name is never taken over.
    """
    marker = f"!oidc:{subject}"
    found = store.get_user_login(username)
    if found is None:
        try:
            user = store.create_user(username, marker, "user")
        except ConflictError:  # a concurrent first login of the same user
            found = store.get_user_login(username)
            assert found is not None
            user = found[0]
    else:
        user, password_hash = found
        if password_hash != marker:
            raise ConflictError(f"a local user named {username!r} exists; an admin must rename one of them")
    governance = GovernanceStore(store.engine)
    team_ids = []
    for name in team_names:
        team = governance.get_team(name)
        if team is None:
            try:
                team = governance.create_team(name, "created by single sign-on")
            except ConflictError:
                team = governance.get_team(name)
                assert team is not None
        team_ids.append(team.id)
    governance.set_user_teams(user.id, team_ids)
    return user


async def oidc_login(req: Request) -> Response:
    """Redirect to the OpenID provider (authorization code flow with PKCE)."""
    try:
        url = await _client(req).authorization_url(_callback_url(req))
    except OIDCError as exc:
        raise ApiError(502, str(exc)) from exc
    return RedirectResponse(url, status_code=302)


async def oidc_callback(req: Request) -> LoginResponse:
    """Finish an SSO login: the user (created on first login, teams from the claim) and a session."""
    client = _client(req)
    if req.query["error"]:
        raise ApiError(401, f"the provider refused the login: {req.query['error']}")
    if not req.query["code"] or not req.query["state"]:
        raise ApiError(422, "the callback needs the provider's code and state")
    try:
        claims = await client.complete(req.query["code"], req.query["state"])
    except OIDCError as exc:
        raise ApiError(401, str(exc)) from exc
    try:
        user = await req.db(
            provision_user,
            req.services.store,
            client.username(claims),
            str(claims["sub"]),
            client.teams(claims),
        )
    except ConflictError as exc:
        raise ApiError(409, str(exc)) from exc
    if user.disabled:
        raise ApiError(403, f"user {user.username!r} is disabled")
    req.services.credentials_changed()  # the user's teams may have changed
    return await open_session(req, user, "sso session")


ENDPOINTS = (
    Endpoint(
        "GET",
        "/auth/oidc/login",
        oidc_login,
        "log in through the OpenID provider (redirect)",
        "auth",
        auth="none",
        status=302,
        errors=((404, _NOT_CONFIGURED), (502, "the OpenID provider could not be reached or answered badly")),
    ),
    Endpoint(
        "GET",
        _CALLBACK,
        oidc_callback,
        "finish an OpenID Connect login: a session token",
        "auth",
        auth="none",
        response=LoginResponse,
        errors=(
            (401, "the provider refused the login, or its code or state is invalid or expired"),
            (403, "the user is disabled"),
            (404, _NOT_CONFIGURED),
            (409, "a local user of the same name exists"),
        ),
        query=(
            Query("code", "str", "authorization code from the provider"),
            Query("state", "str", "the state sent to the provider"),
            Query("error", "str", "the provider's error, when it refused"),
        ),
    ),
)
