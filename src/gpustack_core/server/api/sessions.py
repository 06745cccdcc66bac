"""Browser sessions (cookie + CSRF token) and changing one's own password.

``POST /auth/session`` is ``POST /auth/login`` that also stores the session token in an HttpOnly
cookie (see :mod:`gpustack_core.server.session`); the answer carries the CSRF token the browser
sends back as ``X-CSRF-Token``. ``DELETE /auth/session`` revokes the session and clears the cookie.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from gpustack_core.server.session import csrf_token_for, session_cookie
from gpustack_core.server.store.records import UserRecord

from ._framework import ApiError, Endpoint, Request
from .auth_routes import LOGIN_ERRORS, LoginRequest, login

__all__ = ["ENDPOINTS", "PasswordChange", "SessionCreated"]


class SessionCreated(BaseModel):
    """A browser session: the cookie is set; the CSRF token goes in ``X-CSRF-Token`` on writes."""

    user: UserRecord
    expires_at: dt.datetime
    csrf_token: str
    password_change_required: bool


class PasswordChange(BaseModel):
    """The current password and the new one."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


async def create_session(req: Request) -> Response:
    """Log in with a password and keep the session in an HttpOnly, SameSite=Strict cookie.

    Only ``application/json`` bodies: a cross-site HTML form cannot send that type, so another site
    cannot log a visitor's browser into an account of its choosing (login CSRF).
    """
    content_type = req.raw.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "send the credentials as JSON (Content-Type: application/json)")
    answer = await login(req)
    ttl = int(req.services.config.session_ttl_s)
    created = SessionCreated(
        user=answer.user,
        expires_at=answer.expires_at,
        csrf_token=csrf_token_for(answer.token),
        password_change_required=answer.password_change_required,
    )
    response = JSONResponse(created.model_dump(mode="json"))
    secure = req.raw.url.scheme == "https"
    response.headers.append("set-cookie", session_cookie(answer.token, ttl, secure))
    return response


async def delete_session(req: Request) -> Response:
    """Log out: revoke the session used for this request and clear the cookie."""
    await req.db(req.services.store.delete_key, req.require_caller().key.id)
    req.services.credentials_changed()
    response = Response(status_code=204)
    response.headers.append("set-cookie", session_cookie(None, 0))
    return response


async def change_password(req: Request) -> None:
    """Change your own password (needs the current one); clears the must-change mark."""
    body: PasswordChange = req.body
    caller = req.require_caller()
    found = await req.db(req.services.store.get_user_login, caller.user.username)
    if found is None or not await req.db(req.services.hashing.verify, found[1], body.current_password):
        raise ApiError(
            422,
            [{"loc": ["body", "current_password"], "msg": "the current password is wrong", "type": "auth"}],
        )
    if body.new_password == body.current_password:
        raise ApiError(
            422,
            [{"loc": ["body", "new_password"], "msg": "choose a password you did not use", "type": "reuse"}],
        )
    pw = await req.db(req.services.hashing.hash, body.new_password)
    await req.db(req.services.store.update_user, caller.user.id, password_hash=pw)
    await req.db(req.services.store.require_password_change, caller.user.id, False)


ENDPOINTS = (
    Endpoint(
        "POST",
        "/auth/session",
        create_session,
        "log in and keep the session in a cookie (browsers)",
        "auth",
        auth="none",
        body=LoginRequest,
        response=SessionCreated,
        errors=(*LOGIN_ERRORS, (415, "the body is not application/json (login CSRF protection)")),
    ),
    Endpoint(
        "DELETE",
        "/auth/session",
        delete_session,
        "log out: end the cookie session",
        "auth",
        auth="user",
        status=204,
    ),
    Endpoint(
        "POST",
        "/auth/password",
        change_password,
        "change your own password",
        "auth",
        auth="management",
        body=PasswordChange,
        status=204,
    ),
)
