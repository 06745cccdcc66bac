"""Browser sessions: an HttpOnly cookie that stands for the same principal an API key gives.

A login through ``POST /api/v1/auth/session`` stores a session token (the same kind of token
``POST /api/v1/auth/login`` returns) in the ``gpustack_session`` cookie (HttpOnly, SameSite=Strict).
:class:`SessionCookieMiddleware` turns that cookie into ``Authorization: Bearer <token>`` for every
route (REST and ``/v1``), so the console uses exactly the public API a script uses.

Cross-site request forgery: a state-changing request (anything but GET, HEAD, OPTIONS) that is
authenticated by the cookie must carry ``X-CSRF-Token``, equal to :func:`csrf_token_for` of the
session token (an HMAC-free derivation: the session token is secret and 256-bit, so its keyed hash
cannot be guessed). Pages get it from the server-rendered ``<meta name="csrf-token">``. A request
that sends its own ``Authorization`` header is left alone: the cookie is not used for it.
"""

from __future__ import annotations

import hashlib
import json
from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .security import secrets_equal

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "SessionCookieMiddleware", "csrf_token_for", "session_cookie"]

SESSION_COOKIE = "gpustack_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(session_token: str) -> str:
    """The CSRF token that goes with a session token (hex, 32 characters)."""
    return hashlib.sha256(f"csrf:{session_token}".encode()).hexdigest()[:32]


def session_cookie(token: str | None, max_age_s: int, secure: bool = False) -> str:
    """A ``Set-Cookie`` value carrying ``token`` (``None``: a cookie that deletes the session)."""
    attributes = "Path=/; HttpOnly; SameSite=Strict"
    if secure:
        attributes += "; Secure"
    if token is None:
        return f"{SESSION_COOKIE}=; Max-Age=0; {attributes}"
    return f"{SESSION_COOKIE}={token}; Max-Age={max_age_s}; {attributes}"


def cookie_token(scope: Scope) -> str | None:
    """The session token of a request's cookie, or ``None``."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                return None
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None and morsel.value:
                return morsel.value
    return None


class SessionCookieMiddleware:
    """Authenticate cookie-carrying requests as their session token; refuse forged writes (403)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
        if any(name == b"authorization" for name, _ in headers):
            await self.app(scope, receive, send)
            return
        token = cookie_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS:
            sent = next((v.decode("latin-1") for n, v in headers if n == CSRF_HEADER.encode()), "")
            if not secrets_equal(sent, csrf_token_for(token)):
                await _forbidden(send)
                return
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
        await self.app({**scope, "headers": headers}, receive, send)


async def _forbidden(send: Send) -> None:
    body = json.dumps(
        {
            "detail": "missing or wrong X-CSRF-Token: a state-changing request authenticated by the "
            "session cookie must send the token from the page's <meta name='csrf-token'>"
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 403,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
