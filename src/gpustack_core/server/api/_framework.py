"""A small declarative layer over starlette routes: every endpoint declares its auth, body model,
query parameters and response model; the wrapper enforces auth, validates (422 with field paths),
converts results to JSON, and the same declarations produce the OpenAPI document.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpustack_core.server.auth import Caller, authenticate_key, bearer_token
from gpustack_core.server.request_limits import (
    BodyIncomplete,
    BodyTooLarge,
    read_json_body,
    unstorable_reason,
)
from gpustack_core.server.security import hash_secret, secrets_equal
from gpustack_core.server.services import Services
from gpustack_core.server.store._sql import connection_lost
from gpustack_core.server.store.records import Page

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "ApiError",
    "AuthLevel",
    "Endpoint",
    "Query",
    "Request",
    "build_routes",
    "openapi_document",
]

logger = logging.getLogger(__name__)

#: The range of the databases' BIGINT: larger integers are a client's mistake (422), never a 500.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

AuthLevel = Literal["none", "user", "management", "admin", "worker"]
T = TypeVar("T")
Handler = Callable[["Request"], Awaitable[Any]]


class ApiError(Exception):
    """An error answer: HTTP status and a ``detail`` (string or list of field errors)."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers or {}


@dataclass(frozen=True)
class Query:
    """A query parameter: name, type (``int``, ``str``, ``bool``, ``date``) and description."""

    name: str
    type: Literal["int", "str", "bool", "date"] = "str"
    description: str = ""
    default: Any = None
    #: bounds of an ``int`` parameter (default: the range of a BIGINT)
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Endpoint:
    """One route of the API."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: AuthLevel = "management"
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    list_of: type[BaseModel] | None = None
    query: tuple[Query, ...] = ()
    status: int = 200
    #: a non-JSON answer's media type (e.g. ``text/plain; charset=utf-8`` for logs), for the document
    media_type: str | None = None
    #: further error answers of this endpoint, ``(status, description)``, for the document
    errors: tuple[tuple[int, str], ...] = ()


@dataclass
class Request:
    """What a handler gets: the starlette request, services, caller, parsed body and query."""

    raw: StarletteRequest
    services: Services
    caller: Caller | None
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def path_params(self) -> dict[str, Any]:
        """Path parameters."""
        return dict(self.raw.path_params)

    async def db(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))

    def require_caller(self) -> Caller:
        """The caller; only absent on ``auth='none'`` and ``auth='worker'`` routes."""
        if self.caller is None:  # pragma: no cover - guaranteed by the wrapper
            raise ApiError(401, "authentication required")
        return self.caller


def _error_json(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def validation_detail(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"loc": [where, ...], "msg": ..., "type": ...}]``."""
    return [
        {"loc": [where, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _parse_query(ep: Endpoint, raw: StarletteRequest) -> dict[str, Any]:
    import datetime as dt

    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for q in ep.query:
        text = raw.query_params.get(q.name)
        if text is None:
            values[q.name] = q.default
            continue
        try:
            if "\x00" in text:
                raise ValueError("NUL characters are not allowed")
            if q.type == "int":
                number = int(text)
                low, high = _int_bounds(q)
                if not low <= number <= high:
                    raise ValueError(f"must be between {low} and {high}")
                values[q.name] = number
            elif q.type == "bool":
                if text.lower() not in {"true", "false", "1", "0"}:
                    raise ValueError("expected true or false")
                values[q.name] = text.lower() in {"true", "1"}
            elif q.type == "date":
                values[q.name] = dt.date.fromisoformat(text)
            else:
                values[q.name] = text
        except ValueError as exc:
            errors.append(
                {"loc": ["query", q.name], "msg": f"invalid {q.type} {text!r}: {exc}", "type": q.type}
            )
    if errors:
        raise ApiError(422, errors)
    return values


def _int_bounds(q: Query) -> tuple[int, int]:
    low = INT64_MIN if q.minimum is None else max(INT64_MIN, q.minimum)
    high = INT64_MAX if q.maximum is None else min(INT64_MAX, q.maximum)
    return low, high


def _check_path_params(raw: StarletteRequest) -> None:
    for name, value in raw.path_params.items():
        if isinstance(value, str) and ("\x00" in value or len(value) > 512):
            raise ApiError(
                422,
                [
                    {
                        "loc": ["path", name],
                        "msg": "NUL characters or more than 512 characters",
                        "type": "value",
                    }
                ],
            )


async def _authorize(ep: Endpoint, raw: StarletteRequest, services: Services) -> Caller | None:
    if ep.auth == "none":
        return None
    token = bearer_token(raw.headers.get("authorization"))
    challenge = {"WWW-Authenticate": "Bearer"}
    if token is None:
        raise ApiError(401, "authentication required: send 'Authorization: Bearer <key>'", challenge)
    if ep.auth == "worker":
        expected = services.worker_token_hash
        if expected is None or not secrets_equal(expected, hash_secret(token)):
            raise ApiError(401, "invalid worker token (see <data-dir>/token on the server)", challenge)
        return None
    caller = await anyio.to_thread.run_sync(authenticate_key, services.store, token)
    if caller is None:
        raise ApiError(401, "invalid, expired or revoked credentials", challenge)
    if ep.auth in {"management", "admin"} and "management" not in caller.scopes:
        raise ApiError(403, "this key lacks the 'management' scope")
    if ep.auth == "admin" and not caller.is_admin:
        raise ApiError(403, "this action needs the admin role")
    return caller


def _to_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Page):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _wrap(ep: Endpoint) -> Callable[[StarletteRequest], Awaitable[Response]]:
    async def endpoint(raw: StarletteRequest) -> Response:
        services: Services = raw.app.state.services
        try:
            caller = await _authorize(ep, raw, services)
            _check_path_params(raw)
            body: Any = None
            if ep.body is not None:
                try:
                    parsed = await read_json_body(raw, services.config.api_max_body_bytes)
                except BodyTooLarge as exc:
                    raise ApiError(413, str(exc), {"Connection": "close"}) from exc
                except BodyIncomplete as exc:
                    raise ApiError(408, str(exc), {"Connection": "close"}) from exc
                except ValueError as exc:
                    raise ApiError(
                        422, [{"loc": ["body"], "msg": f"invalid JSON: {exc}", "type": "json"}]
                    ) from exc
                problem = unstorable_reason(parsed, INT64_MIN, INT64_MAX)
                if problem is not None:
                    loc, msg = problem
                    raise ApiError(422, [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])
                try:
                    body = ep.body.model_validate(parsed)
                except ValidationError as exc:
                    raise ApiError(422, validation_detail(exc, "body")) from exc
            request = Request(
                raw=raw, services=services, caller=caller, body=body, query=_parse_query(ep, raw)
            )
            result = await ep.handler(request)
        except ApiError as exc:
            return _error_json(exc.status, exc.detail, exc.headers)
        except DBAPIError as exc:
            if not connection_lost(exc):
                raise
            logger.warning("%s %s: the database connection was lost: %s", raw.method, raw.url.path, exc)
            return _error_json(503, "the database connection was lost; retry", {"Retry-After": "1"})
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=204)
        return JSONResponse(_to_json(result), status_code=ep.status)

    endpoint.__name__ = ep.handler.__name__
    endpoint.__doc__ = ep.summary
    return endpoint


def build_routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """Starlette routes for ``endpoints`` (paths relative to where the API is mounted)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in endpoints:
        by_path.setdefault(ep.path, {})[ep.method] = ep
    routes: list[Route] = []
    for path, methods in by_path.items():
        wrapped = {m: _wrap(ep) for m, ep in methods.items()}

        async def dispatch(
            raw: StarletteRequest,
            _wrapped: dict[str, Callable[[StarletteRequest], Awaitable[Response]]] = wrapped,
        ) -> Response:
            handler = _wrapped.get(raw.method)
            if handler is None:
                return _error_json(405, f"method {raw.method} not allowed", {"Allow": ", ".join(_wrapped)})
            return await handler(raw)

        routes.append(Route(path, dispatch, methods=list(methods)))
    return routes


def _schema_ref(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        defs[name] = sub
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openapi_document(endpoints: Sequence[Endpoint], prefix: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing ``endpoints`` mounted at ``prefix``."""
    defs: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    qtypes = {"int": {"type": "integer"}, "str": {"type": "string"}, "bool": {"type": "boolean"}}
    for ep in endpoints:
        op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag], "operationId": ep.handler.__name__}
        params: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "maxLength": 512, "pattern": "^[^\\x00]*$"},
            }
            for name in _path_params(ep.path)
        ]
        for q in ep.query:
            schema: dict[str, Any] = dict(qtypes.get(q.type, {"type": "string", "format": "date"}))
            if q.type == "int":
                schema["minimum"], schema["maximum"] = _int_bounds(q)
            elif q.type == "str":
                schema["pattern"] = "^[^\\x00]*$"
            params.append(
                {
                    "name": q.name,
                    "in": "query",
                    "required": False,
                    "schema": schema,
                    "description": q.description,
                }
            )
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(ep.body, defs)}},
            }
        responses: dict[str, Any] = {}
        if ep.response is not None:
            responses[str(ep.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": _schema_ref(ep.response, defs)}},
            }
        elif ep.list_of is not None:
            item = _schema_ref(ep.list_of, defs)
            page = {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": item},
                    "total": {"type": "integer"},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                },
            }
            responses[str(ep.status)] = {
                "description": "one page",
                "content": {"application/json": {"schema": page}},
            }
        elif ep.media_type is not None:
            responses[str(ep.status)] = {
                "description": "OK",
                "content": {ep.media_type: {"schema": {"type": "string"}}},
            }
        else:
            responses[str(ep.status)] = {"description": "OK"}
        if ep.body is not None or ep.query or _path_params(ep.path):
            responses["422"] = {"description": "validation error: detail is a list of {loc, msg, type}"}
        if _path_params(ep.path):
            responses["404"] = {"description": "not found: detail names what was looked for"}
        if ep.body is not None:
            responses["408"] = {"description": "the request body did not arrive in time"}
            responses["413"] = {"description": "the request body is larger than the server's limit"}
        if ep.method in {"POST", "PATCH", "PUT", "DELETE"} and ep.auth != "worker":
            responses["409"] = {"description": "conflicts with the current state: detail says how"}
        responses["503"] = {"description": "the database connection was lost; retry (Retry-After)"}
        for code, text in ep.errors:
            responses[str(code)] = {"description": text}
        if "429" in responses:  # every 429 of the API says when to retry
            responses["429"]["headers"] = {
                "Retry-After": {
                    "required": True,
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            }
        if ep.auth != "none":
            op["security"] = [{"bearer": []}]
            responses["401"] = {"description": "missing or invalid credentials"}
            if ep.auth in {"management", "admin"}:
                responses["403"] = {"description": "the key lacks the scope or the user the role"}
        op["responses"] = responses
        # the document names ``{model}``, not starlette's ``{model:path}`` (its convertor)
        doc_path = "/".join(
            "{" + _path_params(part)[0] + "}" if _path_params(part) else part for part in ep.path.split("/")
        )
        paths.setdefault(prefix + doc_path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpustack-core management API", "version": version},
        "paths": paths,
        "components": {"schemas": defs, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _path_params(path: str) -> list[str]:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            out.append(part[1:-1].split(":")[0])
    return out
