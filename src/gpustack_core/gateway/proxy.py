"""The request path: authenticate, read the body, pick an instance, forward, stream back, meter.

Everything here belongs to one :class:`Gateway` object (one per app): the shared HTTP client and
its connection pool, the balancer's counters and the metrics. Nothing is module-global.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio
import httpx
from starlette.types import Message, Receive, Scope, Send

from .balancer import LeastOutstandingBalancer
from .errors import GatewayHTTPError
from .metrics import GatewayMetrics
from .multipart import MultipartError, MultipartModelSniffer, boundary_of
from .protocols import (
    INFERENCE_SCOPE,
    KeyAuthenticator,
    Principal,
    RouteTable,
    Upstream,
    UsageRecord,
    UsageSink,
)
from .usage import SSEUsageScanner, TokenUsage, usage_from_body

__all__ = ["Gateway", "GatewayConfig"]

logger = logging.getLogger(__name__)

# Paths whose streams can carry a final usage chunk on request (OpenAI's stream_options.include_usage).
USAGE_STREAM_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
# Response headers never copied from the engine: hop-by-hop, or set by the gateway's own server.
_DROP_RESPONSE_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"}
)
_INJECT_USAGE = b',"stream_options":{"include_usage":true}}'
_DONE = b"data: [DONE]"
_CLIENT_CLOSED = 499  # nginx's "client closed request", used in metrics only


@dataclass(frozen=True)
class GatewayConfig:
    """Limits of one gateway.

    ``upstream_timeout_s`` bounds each wait for the engine's next bytes (the response head, or the
    next chunk of a stream), not a whole stream; ``connect_timeout_s`` bounds connecting to it.
    """

    max_body_bytes: int = 10 * 1024 * 1024
    upstream_timeout_s: float = 600.0
    connect_timeout_s: float = 5.0


class _BodyTooLarge(Exception):
    """The request body grew past the limit while it was being streamed to the engine."""


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


class _Exchange:
    """The per-request state shared by the forwarding steps."""

    __slots__ = ("disconnected", "finished", "model", "principal", "started", "status")

    def __init__(self, started: float) -> None:
        self.started = started
        self.model = ""  # metrics label: "" until the model is known to the route table
        self.principal: Principal | None = None
        self.status = 0
        self.disconnected = False
        self.finished = False


class Gateway:
    """The gateway's state and request handlers; :func:`gpustack_core.gateway.create_gateway` wires it."""

    def __init__(
        self,
        routes: RouteTable,
        auth: KeyAuthenticator,
        usage: UsageSink,
        metrics: GatewayMetrics,
        config: GatewayConfig,
    ) -> None:
        """Hold the three host objects, the metrics and the limits. Call :meth:`start` before use."""
        self.routes = routes
        self.auth = auth
        self.usage = usage
        self.metrics = metrics
        self.config = config
        self.balancer = LeastOutstandingBalancer()
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the shared HTTP client (its pool is reused by every request)."""
        if self._client is None:
            c = self.config
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    connect=c.connect_timeout_s,
                    read=c.upstream_timeout_s,
                    write=c.upstream_timeout_s,
                    pool=c.upstream_timeout_s,
                ),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=512, keepalive_expiry=30),
                trust_env=False,  # never send engine traffic through an environment-configured proxy
                follow_redirects=False,
            )

    async def aclose(self) -> None:
        """Close the shared HTTP client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # mounted without running the lifespan: start lazily
            await self.start()
        assert self._client is not None
        return self._client

    # -- entry points ------------------------------------------------------------------------------

    async def handle_json(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """An OpenAI JSON endpoint (chat, completions, embeddings, rerank, images, speech) at ``path``."""
        ex = _Exchange(time.perf_counter())
        try:
            headers = dict(scope["headers"])
            ex.principal = await self._authenticate(headers)
            body = await self._read_body(headers, receive)
            obj = _parse_json_body(body)
            model = obj["model"]
            upstreams = self._resolve(ex, model)
            strip_usage = False
            if obj.get("stream") is True and path in USAGE_STREAM_PATHS:
                body, strip_usage = _ask_for_usage(body, obj)
            rewrite = _ModelRewriter(body, obj, model)
            await self._forward(ex, path, receive, send, upstreams, rewrite, strip_usage, headers)
        except GatewayHTTPError as err:
            await self._answer_error(ex, err, scope, receive, send)
        except _ClientGone:
            self._observe(ex, _CLIENT_CLOSED)

    async def handle_multipart(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """An OpenAI multipart endpoint (audio transcription) at ``path``, routed by its ``model`` field."""
        ex = _Exchange(time.perf_counter())
        try:
            headers = dict(scope["headers"])
            ex.principal = await self._authenticate(headers)
            limit = self.config.max_body_bytes
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                raise _too_large(limit)
            try:
                sniffer = MultipartModelSniffer(
                    boundary_of(headers.get(b"content-type", b"").decode("latin-1"))
                )
            except MultipartError as exc:
                raise GatewayHTTPError(400, str(exc), error_type="invalid_request_error") from exc
            received, more = 0, True
            try:
                while more:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = msg.get("body", b"")
                    received += len(chunk)
                    more = msg.get("more_body", False)
                    if received > limit:
                        raise _too_large(limit)
                    if sniffer.feed(chunk):
                        break
                else:
                    sniffer.feed(b"")
                    raise MultipartError("the multipart body has no 'model' field")
            except MultipartError as exc:
                raise GatewayHTTPError(
                    400, str(exc), error_type="invalid_request_error", param="model"
                ) from exc
            assert sniffer.model is not None
            upstreams = self._resolve(ex, sniffer.model)
            stream = _MultipartBody(sniffer, receive, more, received, limit, declared)
            await self._forward(ex, path, receive, send, upstreams, stream, False, headers)
        except GatewayHTTPError as err:
            await self._answer_error(ex, err, scope, receive, send)
        except _ClientGone:
            self._observe(ex, _CLIENT_CLOSED)

    async def handle_models(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """``GET /v1/models`` and ``GET /v1/models/{model}``: the models this key may call."""
        ex = _Exchange(time.perf_counter())
        try:
            principal = await self._authenticate(dict(scope["headers"]))
            rows = [
                {
                    "id": m.id,
                    "object": "model",
                    "created": m.created,
                    "owned_by": m.owned_by,
                    "category": m.category,
                }
                for m in self.routes.models()
                if _may_call(principal, m.id)
            ]
            one = scope.get("path_params", {}).get("model")
            if one is None:
                payload: dict[str, Any] = {"object": "list", "data": rows}
            else:
                match = [r for r in rows if r["id"] == one]
                if not match:
                    raise _model_not_found(one)
                payload = match[0]
            body = json.dumps(payload).encode()
            await _send_full(send, 200, [(b"content-type", b"application/json")], body)
        except GatewayHTTPError as err:
            await self._answer_error(ex, err, scope, receive, send)

    # -- steps -------------------------------------------------------------------------------------

    async def _authenticate(self, headers: dict[bytes, bytes]) -> Principal:
        raw = headers.get(b"authorization")
        if not raw:
            raise GatewayHTTPError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                error_type="invalid_request_error",
                code="missing_api_key",
            )
        scheme, _, token = raw.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GatewayHTTPError(
                401,
                "Malformed Authorization header: expected 'Authorization: Bearer <key>'.",
                error_type="invalid_request_error",
                code="invalid_api_key",
            )
        principal = await self.auth.authenticate(token)
        if principal is None:
            raise GatewayHTTPError(
                401,
                "Incorrect API key provided: check the key, or create a new one.",
                error_type="invalid_request_error",
                code="invalid_api_key",
            )
        if not principal.is_admin and INFERENCE_SCOPE not in principal.scopes:
            raise GatewayHTTPError(
                403,
                f"This API key lacks the '{INFERENCE_SCOPE}' scope needed to call models; "
                "create a key with that scope.",
                error_type="permission_error",
                code="insufficient_scope",
            )
        return principal

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            raise _too_large(limit)
        first = await receive()
        if first["type"] == "http.disconnect":
            raise _ClientGone
        body: bytes = first.get("body", b"")
        if not first.get("more_body", False):
            if len(body) > limit:
                raise _too_large(limit)
            return body
        parts = [body]
        size = len(body)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _ClientGone
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(parts)

    def _resolve(self, ex: _Exchange, model: str) -> Sequence[Upstream]:
        """The running instances of ``model`` this principal may call, or the right error."""
        assert ex.principal is not None
        if not _may_call(ex.principal, model):
            raise GatewayHTTPError(
                403,
                f"This API key may not call model '{model}'.",
                error_type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        upstreams = self.routes.upstreams(model)
        if upstreams:
            ex.model = model
            return upstreams
        states = self.routes.instance_states(model)
        if not states and all(m.id != model for m in self.routes.models()):
            raise _model_not_found(model)
        ex.model = model
        detail = ", ".join(f"{iid}: {state}" for iid, state in states) or "none (no instance scheduled yet)"
        raise GatewayHTTPError(
            503,
            f"Model '{model}' has no running instance; instances: {detail}. Retry when one is running.",
            error_type="server_error",
            code="no_running_instance",
            param="model",
        )

    async def _forward(
        self,
        ex: _Exchange,
        path: str,
        receive: Receive,
        send: Send,
        upstreams: Sequence[Upstream],
        body: _ModelRewriter | _MultipartBody,
        strip_usage: bool,
        headers: dict[bytes, bytes],
    ) -> None:
        client = await self._http()
        tried: list[str] = []
        in_flight = self.metrics.in_flight.labels(ex.model)
        in_flight.inc()
        try:
            while True:
                up = self.balancer.pick(ex.model, upstreams, tried)
                if up is None:
                    raise GatewayHTTPError(
                        502,
                        f"Could not connect to any instance of model '{ex.model}' "
                        f"(tried {', '.join(tried)}).",
                        error_type="server_error",
                        code="upstream_unreachable",
                    )
                self.balancer.acquire(up.instance_id)
                try:
                    request = client.build_request(
                        "POST",
                        up.base_url + path,
                        content=body.content_for(up.served_model_name),
                        headers=_upstream_headers(headers, body.content_length(up.served_model_name)),
                    )
                    try:
                        response = await client.send(request, stream=True)
                    except (
                        httpx.ConnectError,
                        httpx.ConnectTimeout,
                        httpx.RemoteProtocolError,
                        httpx.ReadError,
                    ) as exc:
                        if not body.replayable:
                            raise _upstream_error(ex.model, up, exc) from exc
                        logger.warning(
                            "instance %s of %s failed before answering (%s); retrying",
                            up.instance_id,
                            ex.model,
                            exc,
                        )
                        self.metrics.retries.labels(ex.model).inc()
                        tried.append(up.instance_id)
                        continue
                    except _BodyTooLarge:
                        raise _too_large(self.config.max_body_bytes) from None
                    except httpx.TimeoutException as exc:
                        raise _timeout(ex.model, up) from exc
                    except httpx.HTTPError as exc:
                        raise _upstream_error(ex.model, up, exc) from exc
                    try:
                        await self._relay(ex, receive, send, response, strip_usage)
                    finally:
                        with anyio.CancelScope(shield=True):
                            await response.aclose()
                    return
                finally:
                    self.balancer.release(up.instance_id)
        finally:
            in_flight.dec()

    async def _relay(
        self,
        ex: _Exchange,
        receive: Receive,
        send: Send,
        response: httpx.Response,
        strip_usage: bool,
    ) -> None:
        """Send the engine's response to the client, watching for the client going away."""
        ex.status = response.status_code
        out_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROP_RESPONSE_HEADERS]
        ctype = response.headers.get("content-type", "")
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_disconnect, receive, tg.cancel_scope, ex)
            try:
                if ctype.startswith("text/event-stream"):
                    await self._relay_stream(ex, send, response, out_headers, SSEUsageScanner(strip_usage))
                elif ctype.startswith("application/json") or response.status_code >= 400:
                    await self._relay_whole(ex, send, response, out_headers)
                else:
                    await self._relay_stream(ex, send, response, out_headers, None)
            except Exception as exc:  # raised outside the task group, unwrapped from an ExceptionGroup
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if ex.disconnected and not ex.finished:
            logger.info("client went away: closed the %s stream of model %s", ctype or "response", ex.model)
            await self._finish(ex, None, status=_CLIENT_CLOSED)

    async def _relay_whole(
        self, ex: _Exchange, send: Send, response: httpx.Response, out_headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            data = await response.aread()
        except httpx.TimeoutException as exc:
            raise _timeout(ex.model, None) from exc
        except httpx.HTTPError as exc:
            raise _upstream_error(ex.model, None, exc) from exc
        await self._finish(ex, usage_from_body(data))
        out_headers.append((b"content-length", str(len(data)).encode()))
        await _send_full(send, response.status_code, out_headers, data)

    async def _relay_stream(
        self,
        ex: _Exchange,
        send: Send,
        response: httpx.Response,
        out_headers: list[tuple[bytes, bytes]],
        scanner: SSEUsageScanner | None,
    ) -> None:
        await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
        first = scanner is not None
        try:
            async for chunk in response.aiter_raw():
                if first:
                    self.metrics.observe_ttft(ex.model, time.perf_counter() - ex.started)
                    first = False
                if scanner is not None:
                    chunk = scanner.feed(chunk)
                    if not chunk:
                        continue
                    if _DONE in chunk and not ex.finished:  # meter before the client sees the end
                        await self._finish(ex, scanner.usage)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:  # the engine failed mid-stream: too late for a status code
            logger.warning("stream from model %s broke after it started: %r", ex.model, exc)
            ex.status = 502  # metered as failed, not billed
            if scanner is None:
                raise  # a binary body: the server aborts the connection, so the client sees it truncated
            scanner.flush()  # drop a held-back partial event; a blank line ends one already sent
            await send(
                {"type": "http.response.body", "body": _stream_error_event(ex.model, exc), "more_body": True}
            )
        tail = scanner.flush() if scanner is not None else b""
        if not ex.finished:
            await self._finish(ex, scanner.usage if scanner is not None else None)
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _finish(self, ex: _Exchange, usage: TokenUsage | None, status: int | None = None) -> None:
        """Meter one proxied request: metrics, then the usage record (successful answers only)."""
        ex.finished = True
        code = status if status is not None else ex.status
        self._observe(ex, code)
        if usage is not None:
            self.metrics.add_tokens(ex.model, usage.prompt_tokens, usage.completion_tokens)
        if ex.principal is None or not (200 <= ex.status < 300):
            return
        record = UsageRecord(
            user_id=ex.principal.user_id,
            key_id=ex.principal.key_id,
            model=ex.model,
            day=datetime.now(timezone.utc).date(),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            requests=1,
        )
        try:
            await self.usage.record(record)
        except Exception:
            logger.exception("the usage sink failed to record %s", record)

    def _observe(self, ex: _Exchange, status: int) -> None:
        self.metrics.observe_request(ex.model, status, time.perf_counter() - ex.started)

    async def _answer_error(
        self, ex: _Exchange, err: GatewayHTTPError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self._observe(ex, err.status)
        if err.status >= 500:
            logger.warning("answered %s: %s", err.status, err.message)
        await err.response()(scope, receive, send)


# -- request bodies --------------------------------------------------------------------------------


class _ModelRewriter:
    """A JSON body, re-encoded only for an engine that knows the model by another name."""

    replayable = True

    def __init__(self, body: bytes, obj: dict[str, Any], model: str) -> None:
        self.body = body
        self.obj = obj
        self.model = model
        self._renamed: dict[str, bytes] = {}

    def content_for(self, served_name: str) -> bytes:
        if served_name == self.model:
            return self.body
        data = self._renamed.get(served_name)
        if data is None:
            data = json.dumps({**self.obj, "model": served_name}).encode()
            self._renamed[served_name] = data
        return data

    def content_length(self, served_name: str) -> int | None:
        return len(self.content_for(served_name))


class _MultipartBody:
    """A multipart body: the sniffed head, then the rest of the client's body as it arrives."""

    def __init__(
        self,
        sniffer: MultipartModelSniffer,
        receive: Receive,
        more: bool,
        received: int,
        limit: int,
        declared: int | None,
    ) -> None:
        self.sniffer = sniffer
        self.receive = receive
        self.more = more
        self.received = received
        self.limit = limit
        self.declared = declared
        self.model = sniffer.model or ""
        self.replayable = True  # until the rest of the body starts flowing

    def _head(self, served_name: str) -> bytes:
        if served_name != self.sniffer.model:
            self.sniffer.replace_model(served_name)
        return self.sniffer.head

    def content_length(self, served_name: str) -> int | None:
        if self.declared is None:
            return None
        return self.declared + len(served_name.encode()) - len(self.model.encode())

    def content_for(self, served_name: str) -> AsyncIterator[bytes]:
        return self._iterate(self._head(served_name))

    async def _iterate(self, head: bytes) -> AsyncIterator[bytes]:
        self.replayable = False
        yield head
        while self.more:
            msg: Message = await self.receive()
            if msg["type"] == "http.disconnect":
                raise _ClientGone
            chunk = msg.get("body", b"")
            self.received += len(chunk)
            if self.received > self.limit:
                raise _BodyTooLarge
            self.more = msg.get("more_body", False)
            if chunk:
                yield chunk


# -- helpers ---------------------------------------------------------------------------------------


def _parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise GatewayHTTPError(
            400, f"The request body is not valid JSON: {exc}.", error_type="invalid_request_error"
        ) from exc
    if not isinstance(obj, dict):
        raise GatewayHTTPError(
            422, "The request body must be a JSON object.", error_type="invalid_request_error"
        )
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayHTTPError(
            422,
            "The request body needs a 'model' field naming the model to call (see GET /v1/models).",
            error_type="invalid_request_error",
            param="model",
        )
    return obj


def _ask_for_usage(body: bytes, obj: dict[str, Any]) -> tuple[bytes, bool]:
    """Make a streamed request ask for the final usage chunk; True when the client had not asked."""
    opts = obj.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") is True:
        return body, False
    if opts is None and "stream_options" not in obj:
        end = body.rstrip().rfind(b"}")
        obj["stream_options"] = {"include_usage": True}
        return body[:end] + _INJECT_USAGE, True
    obj["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    return json.dumps(obj).encode(), True


def _upstream_headers(headers: dict[bytes, bytes], length: int | None) -> list[tuple[bytes, bytes]]:
    out = [
        (b"content-type", headers.get(b"content-type", b"application/json")),
        (b"accept-encoding", b"identity"),
    ]
    accept = headers.get(b"accept")
    if accept:
        out.append((b"accept", accept))
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise GatewayHTTPError(
            400, "The Content-Length header is not a number.", error_type="invalid_request_error"
        ) from None


def _may_call(principal: Principal, model: str) -> bool:
    return principal.is_admin or principal.allowed_models is None or model in principal.allowed_models


async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope, ex: _Exchange) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not ex.finished:
                ex.disconnected = True
                scope.cancel()
            return


async def _send_full(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _stream_error_event(model: str, exc: Exception) -> bytes:
    """An SSE event in the shape OpenAI uses for errors inside a stream (its client raises APIError)."""
    message = f"The instance of model '{model}' failed while streaming: {type(exc).__name__}."
    error = {"message": message, "type": "server_error", "param": None, "code": "upstream_stream_broken"}
    return b"\n\ndata: " + json.dumps({"error": error}).encode() + b"\n\n"


def _too_large(limit: int) -> GatewayHTTPError:
    return GatewayHTTPError(
        413,
        f"The request body is larger than this gateway's limit of {limit} bytes; send a smaller request.",
        error_type="invalid_request_error",
        code="request_too_large",
    )


def _model_not_found(model: str) -> GatewayHTTPError:
    return GatewayHTTPError(
        404,
        f"The model '{model}' does not exist; GET /v1/models lists the models you can call.",
        error_type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def _timeout(model: str, up: Upstream | None) -> GatewayHTTPError:
    where = f" (instance {up.instance_id})" if up is not None else ""
    return GatewayHTTPError(
        504,
        f"The instance of model '{model}'{where} did not answer in time.",
        error_type="timeout_error",
        code="upstream_timeout",
    )


def _upstream_error(model: str, up: Upstream | None, exc: Exception) -> GatewayHTTPError:
    where = f" (instance {up.instance_id})" if up is not None else ""
    return GatewayHTTPError(
        502,
        f"The instance of model '{model}'{where} failed: {type(exc).__name__}: {exc}.",
        error_type="server_error",
        code="upstream_error",
    )
