"""The request path: authenticate, read the body, pick an instance, forward, stream back, meter.

Everything here belongs to one :class:`Gateway` object (one per app): the shared HTTP client and
its connection pool, the balancer's counters and the metrics. Nothing is module-global.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.types import Receive, Scope, Send

from ._bodies import (
    BodyTooLarge,
    ClientGone,
    ModelRewriter,
    MultipartBody,
    ask_for_usage,
    content_length,
    may_call,
    model_not_found,
    parse_json_body,
    request_head,
    stream_error_event,
    too_large,
    upstream_error,
    upstream_timeout,
)
from .balancer import LeastOutstandingBalancer
from .categories import check_category
from .coldstart import ColdStarter
from .errors import GatewayHTTPError
from .fallback import FallbackPolicy
from .limits import Limiter, LimitExceeded, Reservation, estimate_tokens, rate_limit_headers
from .metrics import GatewayMetrics
from .multipart import MultipartError, MultipartModelSniffer, boundary_of
from .pool import (
    Cancellation,
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)
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
_DONE = b"data: [DONE]"
_CLIENT_CLOSED = 499  # nginx's "client closed request", used in metrics only


@dataclass(frozen=True)
class GatewayConfig:
    """Limits of one gateway.

    ``upstream_timeout_s`` bounds each wait for the engine's next bytes (the response head, or the
    next chunk of a stream), not a whole stream; ``connect_timeout_s`` bounds connecting to it.
    ``default_max_tokens`` is the completion budget a limiter reserves for a request without
    ``max_tokens`` (see :func:`gpustack_core.gateway.limits.estimate_tokens`). ``hold_timeout_s``
    and ``max_held`` bound how long and how many requests per model wait for a cold start.
    """

    max_body_bytes: int = 10 * 1024 * 1024
    upstream_timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    default_max_tokens: int = 4096
    hold_timeout_s: float = 120.0
    max_held: int = 256


_Chain = list[tuple[str, Sequence[Upstream]]]


class _Exchange:
    """The per-request state shared by the forwarding steps."""

    __slots__ = (
        "begun",
        "cancellation",
        "disconnected",
        "finished",
        "model",
        "principal",
        "rate_headers",
        "reservation",
        "started",
        "status",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.reservation: Reservation | None = None  # settled (and cleared) exactly once
        self.rate_headers: list[tuple[bytes, bytes]] = []
        self.begun = ""  # the model a cold starter was told about (told again when it ends)
        self.model = ""  # metrics label: "" until the model is known to the route table
        self.principal: Principal | None = None
        self.status = 0
        self.disconnected = False
        self.finished = False
        self.cancellation = Cancellation()  # the watcher stops the engine exchange with it


class Gateway:
    """The gateway's state and request handlers; :func:`gpustack_core.gateway.create_gateway` wires it."""

    def __init__(
        self,
        routes: RouteTable,
        auth: KeyAuthenticator,
        usage: UsageSink,
        metrics: GatewayMetrics,
        config: GatewayConfig,
        limiter: Limiter | None = None,
        fallbacks: FallbackPolicy | None = None,
        cold_starter: ColdStarter | None = None,
    ) -> None:
        """Hold the host objects, the metrics and the limits. Call :meth:`start` before use.

        ``limiter`` (optional) enforces quotas and rate limits; ``fallbacks`` (optional) names the
        models that answer when a model cannot; ``cold_starter`` (optional) starts models that
        are scaled to zero while their requests are held.
        """
        self.routes = routes
        self.auth = auth
        self.usage = usage
        self.limiter = limiter
        self.fallbacks = fallbacks
        self.cold_starter = cold_starter
        self._held: dict[str, int] = {}
        self.metrics = metrics
        self.config = config
        self.balancer = LeastOutstandingBalancer()
        self._pool: UpstreamPool | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the shared connection pool to the engines (reused by every request).

        The pool runs on asyncio protocols: under another event loop (trio) this raises.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "the gateway needs an asyncio event loop (uvicorn, hypercorn's asyncio worker, or "
                "anyio on its asyncio backend)"
            ) from None
        if self._pool is None:
            c = self.config
            self._pool = UpstreamPool(
                connect_timeout=c.connect_timeout_s,
                read_timeout=c.upstream_timeout_s,
                keepalive_expiry=30.0,
                max_idle_per_origin=256,
            )

    async def aclose(self) -> None:
        """Close the pool and its idle connections."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.aclose()

    async def _connections(self) -> UpstreamPool:
        if self._pool is None:  # mounted without running the lifespan: start lazily
            await self.start()
        assert self._pool is not None
        return self._pool

    # -- entry points ------------------------------------------------------------------------------

    async def handle_json(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """An OpenAI JSON endpoint (chat, completions, embeddings, rerank, images, speech) at ``path``."""
        ex = _Exchange(time.perf_counter())
        try:
            headers = dict(scope["headers"])
            ex.principal = await self._authenticate(headers)
            body = await self._read_body(headers, receive)
            obj = parse_json_body(body)
            model = obj["model"]
            if ex.principal is not None and may_call(ex.principal, model):  # before a cold start
                check_category(self.routes.models(), model, path)
            chain = await self._route(ex, model, True, receive)
            if self.limiter is not None:
                await self._reserve(
                    ex, model, estimate_tokens(obj, len(body), self.config.default_max_tokens)
                )
            strip_usage = False
            if obj.get("stream") is True and path in USAGE_STREAM_PATHS:
                body, strip_usage = ask_for_usage(body, obj)
            rewrite = ModelRewriter(body, obj, model)
            await self._forward(ex, path, receive, send, chain, rewrite, strip_usage, headers)
        except GatewayHTTPError as err:
            await self._answer_error(ex, err, scope, receive, send)
        except ClientGone:
            self._observe(ex, _CLIENT_CLOSED)
        except Exception as exc:
            await self._internal_error(ex, exc, scope, receive, send)
        finally:
            if ex.reservation is not None:
                await self._settle(ex, 0)
            if ex.begun and self.cold_starter is not None:
                self.cold_starter.end(ex.begun)

    async def handle_multipart(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """An OpenAI multipart endpoint (audio transcription) at ``path``, routed by its ``model`` field."""
        ex = _Exchange(time.perf_counter())
        try:
            headers = dict(scope["headers"])
            ex.principal = await self._authenticate(headers)
            limit = self.config.max_body_bytes
            declared = content_length(headers)
            if declared is not None and declared > limit:
                raise too_large(limit)
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
                        raise ClientGone
                    chunk = msg.get("body", b"")
                    received += len(chunk)
                    more = msg.get("more_body", False)
                    if received > limit:
                        raise too_large(limit)
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
            if ex.principal is not None and may_call(ex.principal, sniffer.model):
                check_category(self.routes.models(), sniffer.model, path)
            chain = await self._route(ex, sniffer.model, False, None)
            if self.limiter is not None:
                await self._reserve(ex, sniffer.model, declared or received)
            stream = MultipartBody(sniffer, receive, more, received, limit, declared)
            await self._forward(ex, path, receive, send, chain, stream, False, headers)
        except GatewayHTTPError as err:
            await self._answer_error(ex, err, scope, receive, send)
        except ClientGone:
            self._observe(ex, _CLIENT_CLOSED)
        except Exception as exc:
            await self._internal_error(ex, exc, scope, receive, send)
        finally:
            if ex.reservation is not None:
                await self._settle(ex, 0)
            if ex.begun and self.cold_starter is not None:
                self.cold_starter.end(ex.begun)

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
                if may_call(principal, m.id)
            ]
            one = scope.get("path_params", {}).get("model")
            if one is None:
                payload: dict[str, Any] = {"object": "list", "data": rows}
            else:
                match = [r for r in rows if r["id"] == one]
                if not match:
                    raise model_not_found(one)
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
        declared = content_length(headers)
        if declared is not None and declared > limit:
            raise too_large(limit)
        first = await receive()
        if first["type"] == "http.disconnect":
            raise ClientGone
        body: bytes = first.get("body", b"")
        if not first.get("more_body", False):
            if len(body) > limit:
                raise too_large(limit)
            return body
        parts = [body]
        size = len(body)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            parts.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(parts)

    async def _reserve(self, ex: _Exchange, model: str, tokens: int) -> None:
        """Count the request against the caller's limits, or refuse it with 429."""
        assert self.limiter is not None
        assert ex.principal is not None
        try:
            reservation = await self.limiter.reserve(ex.principal, model, tokens)
        except LimitExceeded as exc:
            self.metrics.rate_limited.labels(ex.model, exc.code).inc()
            raise exc.http_error() from None
        if reservation is not None:
            ex.reservation = reservation
            ex.rate_headers = [*ex.rate_headers, *rate_limit_headers(reservation.snapshot)]

    async def _settle(self, ex: _Exchange, used_tokens: int) -> None:
        reservation, ex.reservation = ex.reservation, None
        if reservation is None or self.limiter is None:
            return
        try:
            await self.limiter.settle(reservation, used_tokens)
        except Exception:
            logger.exception("the limiter failed to settle a reservation of %d tokens", reservation.tokens)

    async def _route(self, ex: _Exchange, model: str, fallback: bool, receive: Receive | None) -> _Chain:
        """:meth:`_resolve`, holding the request while a cold starter wakes a model at zero."""
        cold = self.cold_starter
        if cold is None:
            return self._resolve(ex, model, fallback)
        assert ex.principal is not None
        cold.begin(model)
        ex.begun = model
        if self.routes.upstreams(model) or not cold.can_wake(model) or not may_call(ex.principal, model):
            return self._resolve(ex, model, fallback)
        await self._hold(ex, model, receive)
        return self._resolve(ex, model, fallback)

    async def _hold(self, ex: _Exchange, model: str, receive: Receive | None) -> None:
        """Wait for ``model``'s first running instance (bounded), or raise 503 / :class:`ClientGone`."""
        assert self.cold_starter is not None
        held = self._held.get(model, 0)
        if held >= self.config.max_held:
            raise GatewayHTTPError(
                503,
                f"Model '{model}' is starting and {held} requests already wait for it; retry shortly.",
                error_type="server_error",
                code="cold_start_queue_full",
                headers=[(b"retry-after", b"5")],
            )
        self._held[model] = held + 1
        watcher = None if receive is None else self._watch(ex, receive)
        started = time.perf_counter()
        try:
            await self.cold_starter.wake(model)
            deadline = started + self.config.hold_timeout_s
            while not self.routes.upstreams(model):
                if ex.disconnected:
                    raise ClientGone
                if time.perf_counter() >= deadline:
                    raise GatewayHTTPError(
                        503,
                        f"Model '{model}' was scaled to zero and did not start within "
                        f"{self.config.hold_timeout_s:g} s; retry later.",
                        error_type="server_error",
                        code="cold_start_timeout",
                        headers=[(b"retry-after", b"10")],
                    )
                await asyncio.sleep(0.05)
        finally:
            self._held[model] -= 1
            if watcher is not None:
                watcher.cancel()
        waited = time.perf_counter() - started
        self.metrics.cold_start_wait.labels(model).observe(waited)
        ex.rate_headers = [*ex.rate_headers, (b"x-gpustack-cold-start-ms", b"%d" % round(waited * 1000))]
        logger.info("held a request for %s %.2f s while it started from zero", model, waited)

    def _resolve(self, ex: _Exchange, model: str, fallback: bool) -> _Chain:
        """``model`` and the fallbacks this principal may call with their running instances, or the
        right error when none of them has one."""
        assert ex.principal is not None
        if not may_call(ex.principal, model):
            raise GatewayHTTPError(
                403,
                f"This API key may not call model '{model}'.",
                error_type="permission_error",
                code="model_not_allowed",
                param="model",
            )
        upstreams = self.routes.upstreams(model)
        chain: _Chain = [(model, upstreams)] if upstreams else []
        if fallback and self.fallbacks is not None:
            for other in self.fallbacks.fallbacks(model):
                if other != model and may_call(ex.principal, other):
                    ups = self.routes.upstreams(other)
                    if ups:
                        chain.append((other, ups))
        if chain:
            ex.model = model
            if not upstreams:
                self.metrics.fallbacks.labels(model, chain[0][0], "no_running_instance").inc()
                ex.model = chain[0][0]
            return chain
        states = self.routes.instance_states(model)
        if not states and all(m.id != model for m in self.routes.models()):
            raise model_not_found(model)
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
        chain: _Chain,
        body: ModelRewriter | MultipartBody,
        strip_usage: bool,
        headers: dict[bytes, bytes],
    ) -> None:
        """Forward and relay the answer, watching for the client leaving once its body is read.

        A JSON body is already read, so the watch starts now; a multipart body is streamed to the
        engine from ``receive``, so its watch starts when the answer does.
        """
        watcher = None if isinstance(body, MultipartBody) else self._watch(ex, receive)
        try:
            response, release = await self._send_chain(ex, path, chain, body, headers)
            try:
                if watcher is None:
                    watcher = self._watch(ex, receive)
                await self._relay(ex, send, response, strip_usage)
            finally:
                await response.aclose()
                release()
        finally:
            if watcher is not None:
                watcher.cancel()
        await self._after_disconnect(ex)

    def _watch(self, ex: _Exchange, receive: Receive) -> asyncio.Task[None]:
        """A task that stops the engine exchange when the client disconnects."""
        return asyncio.get_running_loop().create_task(_watch_disconnect(receive, ex))

    async def _send_chain(
        self,
        ex: _Exchange,
        path: str,
        chain: _Chain,
        body: ModelRewriter | MultipartBody,
        headers: dict[bytes, bytes],
    ) -> tuple[UpstreamResponse, Callable[[], None]]:
        """Send to the first model of the chain that answers without a 5xx; the last one's answer
        (or error) stands. Moves on only while the body can be sent again."""
        last = len(chain) - 1
        for i, (model, upstreams) in enumerate(chain):
            ex.model = model
            final = i == last or not body.replayable
            try:
                response, release = await self._send_request(ex, path, upstreams, body, headers)
            except GatewayHTTPError as err:
                if final or err.code not in ("upstream_unreachable", "upstream_timeout", "upstream_error"):
                    raise
                self.metrics.fallbacks.labels(model, chain[i + 1][0], err.code or "upstream_error").inc()
                logger.warning(
                    "model %s failed (%s); falling back to %s", model, err.message, chain[i + 1][0]
                )
                continue
            if response.status >= 500 and not final:
                await response.aclose()
                release()
                self.metrics.fallbacks.labels(model, chain[i + 1][0], "upstream_5xx").inc()
                logger.warning(
                    "model %s answered %s; falling back to %s", model, response.status, chain[i + 1][0]
                )
                continue
            return response, release
        raise AssertionError("unreachable: the last model of a chain returns or raises")

    async def _send_request(
        self,
        ex: _Exchange,
        path: str,
        upstreams: Sequence[Upstream],
        body: ModelRewriter | MultipartBody,
        headers: dict[bytes, bytes],
    ) -> tuple[UpstreamResponse, Callable[[], None]]:
        """Send the request to the least busy instance, then the next, until one answers.

        Returns the answer and the function that gives its instance's slot back. Raises
        :class:`ClientGone` when the client left first.
        """
        pool = await self._connections()
        tried: list[str] = []
        in_flight = self.metrics.in_flight.labels(ex.model)
        raw_path = path.encode()
        while True:
            up = self.balancer.pick(ex.model, upstreams, tried)
            if up is None:
                raise GatewayHTTPError(
                    502,
                    f"Could not connect to any instance of model '{ex.model}' (tried {', '.join(tried)}).",
                    error_type="server_error",
                    code="upstream_unreachable",
                )
            instance = up.instance_id
            self.balancer.acquire(instance)
            in_flight.inc()

            def release(instance: str = instance) -> None:
                self.balancer.release(instance)
                in_flight.dec()

            try:
                origin, prefix = pool.resolve(up.base_url)
                served = up.served_model_name
                length = body.content_length(served)
                response = await pool.request(
                    origin,
                    request_head(prefix + raw_path, origin, headers, length),
                    body.content_for(served),
                    chunked=length is None,
                    replayable=body.replayable,
                    cancellation=ex.cancellation,
                )
            except UpstreamTimeout as exc:
                release()
                raise upstream_timeout(ex.model, up) from exc
            except (UpstreamConnectError, UpstreamClosed) as exc:
                release()
                if not body.replayable:
                    raise upstream_error(ex.model, up, exc) from exc
                logger.warning(
                    "instance %s of %s failed before answering (%s); retrying", instance, ex.model, exc
                )
                self.metrics.retries.labels(ex.model).inc()
                tried.append(instance)
                continue
            except BodyTooLarge:
                release()
                raise too_large(self.config.max_body_bytes) from None
            except UpstreamError as exc:
                release()
                raise upstream_error(ex.model, up, exc) from exc
            except BaseException:
                release()
                raise
            return response, release

    async def _relay(self, ex: _Exchange, send: Send, response: UpstreamResponse, strip_usage: bool) -> None:
        """Send the engine's answer to the client."""
        ex.status = response.status
        out_headers = [(k, v) for k, v in response.headers if k.lower() not in _DROP_RESPONSE_HEADERS]
        out_headers.extend(ex.rate_headers)
        ctype = next((v.decode("latin-1") for k, v in out_headers if k.lower() == b"content-type"), "")
        try:
            if ctype.startswith("text/event-stream"):
                await self._relay_stream(ex, send, response, out_headers, SSEUsageScanner(strip_usage))
            elif ctype.startswith("application/json") or response.status >= 400:
                await self._relay_whole(ex, send, response, out_headers)
            else:
                await self._relay_stream(ex, send, response, out_headers, None)
        except ClientGone:
            pass  # metered by _after_disconnect

    async def _after_disconnect(self, ex: _Exchange) -> None:
        if ex.disconnected and not ex.finished:
            logger.info("client went away: closed the request to model %s", ex.model)
            await self._finish(ex, None, status=_CLIENT_CLOSED)

    async def _relay_whole(
        self, ex: _Exchange, send: Send, response: UpstreamResponse, out_headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            data = await response.read()
        except UpstreamTimeout as exc:
            raise upstream_timeout(ex.model, None) from exc
        except UpstreamError as exc:
            raise upstream_error(ex.model, None, exc) from exc
        await self._finish(ex, usage_from_body(data))
        out_headers.append((b"content-length", str(len(data)).encode()))
        await _send_full(send, response.status, out_headers, data)

    async def _relay_stream(
        self,
        ex: _Exchange,
        send: Send,
        response: UpstreamResponse,
        out_headers: list[tuple[bytes, bytes]],
        scanner: SSEUsageScanner | None,
    ) -> None:
        await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
        first = scanner is not None
        try:
            while (chunk := await response.next_chunk()) is not None:
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
        except UpstreamError as exc:  # the engine failed mid-stream: too late for a status code
            logger.warning("stream from model %s broke after it started: %r", ex.model, exc)
            ex.status = 502  # metered as failed, not billed
            if scanner is None:
                raise  # a binary body: the server aborts the connection, so the client sees it truncated
            scanner.flush()  # drop a held-back partial event; a blank line ends one already sent
            await send(
                {"type": "http.response.body", "body": stream_error_event(ex.model, exc), "more_body": True}
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
        ok = ex.principal is not None and 200 <= ex.status < 300
        if ex.reservation is not None:
            await self._settle(ex, usage.prompt_tokens + usage.completion_tokens if ok and usage else 0)
        if ex.principal is None or not ok:
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

    async def _internal_error(
        self, ex: _Exchange, exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A defect of the gateway: logged, counted as 500 and, when nothing was sent yet, answered
        with a JSON 500 that closes the connection (the stream state is unknown)."""
        logger.error("internal error on %s", scope.get("path"), exc_info=exc)
        if ex.status or ex.finished:  # the answer had started: only the metrics are left to do
            if not ex.finished:
                self._observe(ex, 500)
            return
        err = GatewayHTTPError(
            500, f"Internal error in the gateway ({type(exc).__name__}).", error_type="server_error"
        )
        self._observe(ex, 500)
        response = err.response()
        response.headers["connection"] = "close"
        await response(scope, receive, send)

    async def _answer_error(
        self, ex: _Exchange, err: GatewayHTTPError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self._observe(ex, err.status)
        if ex.rate_headers and err.status != 429:
            err.headers.extend(ex.rate_headers)
        if err.status >= 500:
            logger.warning("answered %s: %s", err.status, err.message)
        await err.response()(scope, receive, send)


async def _watch_disconnect(receive: Receive, ex: _Exchange) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not ex.finished:
                ex.disconnected = True
                ex.cancellation.cancel(ClientGone())
            return


async def _send_full(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
