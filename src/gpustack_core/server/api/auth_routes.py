"""Login, logout and the current user."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from gpustack_core.server.security import hash_secret, new_api_key
from gpustack_core.server.store import utcnow
from gpustack_core.server.store.records import ApiKeyRecord, UserRecord

from ._framework import ApiError, Endpoint, Request

__all__ = ["ENDPOINTS", "LOGIN_ERRORS", "LoginRequest", "LoginResponse", "open_session"]

#: The error answers of every password login route (``/auth/login``, ``/auth/session``), for the
#: document: failed logins are rate limited per (user, client address), so 429 with Retry-After.
LOGIN_ERRORS = (
    (401, "wrong username or password"),
    (403, "password login is disabled on this server (single sign-on only)"),
    (429, "too many failed logins; retry after Retry-After seconds"),
)


class LoginRequest(BaseModel):
    """Username and password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    """A session token to send as ``Authorization: Bearer <token>``."""

    token: str
    expires_at: dt.datetime
    user: UserRecord
    password_change_required: bool = False


class MeResponse(BaseModel):
    """The caller and the key or session they used."""

    user: UserRecord
    key: ApiKeyRecord
    password_change_required: bool = False


async def login(req: Request) -> LoginResponse:
    """Check a password and open a session; failures are rate limited per (user, client address)."""
    body: LoginRequest = req.body
    if not req.services.config.local_login:
        raise ApiError(403, "password login is disabled on this server; log in at /api/v1/auth/oidc/login")
    client = req.raw.client.host if req.raw.client else "unknown"
    limiter = req.services.limiter
    wait = limiter.retry_after(body.username, client)
    if wait is not None:
        raise ApiError(
            429, f"too many failed logins; retry in {int(wait) + 1} s", {"Retry-After": str(int(wait) + 1)}
        )
    found = await req.db(req.services.store.get_user_login, body.username)
    if found is not None:
        ok = await req.db(req.services.hashing.verify, found[1], body.password)
    else:  # as slow as a wrong password, so timing does not tell which names exist
        ok = await req.db(req.services.hashing.verify_unknown_user, body.password)
    if found is None or not ok or found[0].disabled:
        limiter.failed(body.username, client)
        raise ApiError(401, "wrong username or password")
    limiter.succeeded(body.username, client)
    return await open_session(req, found[0], "login session")


async def open_session(req: Request, user: UserRecord, name: str) -> LoginResponse:
    """A new session for ``user`` (a password or single sign-on login), valid ``session_ttl_s``."""
    key_id, token = new_api_key()
    expires = utcnow() + dt.timedelta(seconds=req.services.config.session_ttl_s)
    await req.db(
        req.services.store.create_key,
        key_id,
        user.id,
        name,
        "session",
        hash_secret(token),
        ["management", "inference"],
        None,
        expires,
    )
    must_change = await req.db(req.services.store.password_change_required, user.id)
    return LoginResponse(
        token=token,
        expires_at=expires.replace(tzinfo=dt.timezone.utc),
        user=user,
        password_change_required=must_change,
    )


async def logout(req: Request) -> None:
    """End the session (or revoke the key) used for this request."""
    await req.db(req.services.store.delete_key, req.require_caller().key.id)
    req.services.credentials_changed()


async def me(req: Request) -> MeResponse:
    """Who the caller is."""
    caller = req.require_caller()
    must_change = await req.db(req.services.store.password_change_required, caller.user.id)
    return MeResponse(user=caller.user, key=caller.key, password_change_required=must_change)


ENDPOINTS = (
    Endpoint(
        "POST",
        "/auth/login",
        login,
        "log in with a password",
        "auth",
        auth="none",
        body=LoginRequest,
        response=LoginResponse,
        errors=LOGIN_ERRORS,
    ),
    Endpoint("POST", "/auth/logout", logout, "end the current session", "auth", auth="user", status=204),
    Endpoint("GET", "/auth/me", me, "the current user", "auth", auth="user", response=MeResponse),
)
