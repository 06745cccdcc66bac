"""Page routes of the console: who is signed in, which page, and the template that renders it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gpustack_core.__about__ import __version__
from gpustack_core.server.auth import Caller, authenticate_key
from gpustack_core.server.session import cookie_token, csrf_token_for

__all__ = ["PAGES", "Page", "console_routes"]

_HERE = Path(__file__).resolve().parent
STATIC_PREFIX = "/console-static"


@dataclass(frozen=True)
class Page:
    """A console page: URL path, template, title, whether only admins may open it."""

    path: str
    template: str
    title: str
    admin: bool = False
    nav: bool = True


PAGES = (
    Page("/", "dashboard.html", "Dashboard"),
    Page("/workers", "workers.html", "Workers"),
    Page("/deployments", "deployments.html", "Deployments"),
    Page("/deployments/new", "deployment_form.html", "New deployment", admin=True, nav=False),
    Page("/deployments/{name}/edit", "deployment_form.html", "Edit deployment", admin=True, nav=False),
    Page("/instances/{instance_id}", "instance.html", "Instance", nav=False),
    Page("/catalog", "catalog.html", "Catalog"),
    Page("/playground", "playground.html", "Playground"),
    Page("/api-keys", "api_keys.html", "API keys"),
    Page("/usage", "usage.html", "Usage"),
    Page("/users", "users.html", "Users", admin=True),
    Page("/account/password", "password.html", "Change password", nav=False),
)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = STATIC_PREFIX
    env.globals["version"] = __version__
    env.globals["nav_pages"] = [p for p in PAGES if p.nav]
    return env


async def _caller(request: Request) -> tuple[Caller, str] | None:
    token = cookie_token(request.scope)
    if token is None:
        return None
    caller = await anyio.to_thread.run_sync(authenticate_key, request.app.state.services.store, token)
    return None if caller is None else (caller, token)


def _page_endpoint(page: Page, env: Environment) -> Route:
    template = env.get_template(page.template)

    async def endpoint(request: Request) -> Response:
        found = await _caller(request)
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        caller, token = found
        store = request.app.state.services.store
        must_change = await anyio.to_thread.run_sync(store.password_change_required, caller.user.id)
        if must_change and page.path != "/account/password":
            return RedirectResponse("/account/password?required=1", status_code=303)
        status = 200
        if page.admin and not caller.is_admin:
            status = 403
        html = template.render(
            page=page,
            forbidden=status == 403,
            user=caller.user,
            is_admin=caller.is_admin,
            csrf_token=csrf_token_for(token),
            path_params=dict(request.path_params),
            must_change=must_change,
        )
        return HTMLResponse(html, status_code=status, headers=_NO_STORE)

    endpoint.__name__ = f"console_{page.template.removesuffix('.html')}"
    return Route(page.path, endpoint, methods=["GET"])


_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


def console_routes() -> list[BaseRoute]:
    """The console's routes: ``/login``, the pages, and ``/console-static``."""
    env = _environment()
    login_template = env.get_template("login.html")

    async def login_page(request: Request) -> Response:
        if await _caller(request) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        return HTMLResponse(login_template.render(page=None, user=None, csrf_token=""), headers=_NO_STORE)

    routes: list[BaseRoute] = [Route("/login", login_page, methods=["GET"])]
    routes.extend(_page_endpoint(page, env) for page in PAGES)
    routes.append(
        Mount(STATIC_PREFIX, app=StaticFiles(directory=str(_HERE / "static")), name="console-static")
    )
    return routes


def _safe_next(target: str | None) -> str:
    """Only same-site paths (``/x``, never ``//host`` or a URL) are followed after login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
