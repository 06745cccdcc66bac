"""The web console: server-rendered pages (Jinja2 through starlette) and small JavaScript.

Pages are shells rendered with the signed-in user and the session's CSRF token; everything they show
or change goes through the public REST API (``/api/v1``) and the OpenAI-compatible ``/v1`` routes,
with the session cookie standing for the user (see :mod:`gpustack_core.server.session`). What the
console does, a script with an API key can do. Templates and static files ship in the wheel.
"""

from __future__ import annotations

from ._pages import console_routes

__all__ = ["console_routes"]
