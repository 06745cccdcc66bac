"""Request bodies and small helpers of the gateway's request path (internal to the gateway)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Message, Receive

from .errors import GatewayHTTPError
from .multipart import MultipartModelSniffer
from .pool import Origin
from .protocols import Principal, Upstream

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "ModelRewriter",
    "MultipartBody",
    "ask_for_usage",
    "content_length",
    "may_call",
    "model_not_found",
    "parse_json_body",
    "request_head",
    "stream_error_event",
    "too_large",
    "upstream_error",
    "upstream_timeout",
]

_INJECT_USAGE = b',"stream_options":{"include_usage":true}}'


class BodyTooLarge(Exception):
    """The request body grew past the limit while it was being streamed to the engine."""


class ClientGone(Exception):
    """The client disconnected while its request body was being read."""


class ModelRewriter:
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


class MultipartBody:
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
                raise ClientGone
            chunk = msg.get("body", b"")
            self.received += len(chunk)
            if self.received > self.limit:
                raise BodyTooLarge
            self.more = msg.get("more_body", False)
            if chunk:
                yield chunk


def parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise GatewayHTTPError(
            400, f"The request body is not valid JSON: {exc}.", error_type="invalid_request_error"
        ) from exc
    except RecursionError:
        raise GatewayHTTPError(
            400,
            "The request body's JSON is nested too deeply to parse; flatten it.",
            error_type="invalid_request_error",
        ) from None
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


def ask_for_usage(body: bytes, obj: dict[str, Any]) -> tuple[bytes, bool]:
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


def request_head(path: bytes, origin: Origin, headers: dict[bytes, bytes], length: int | None) -> bytes:
    """The request line and headers of a POST to an engine (``length`` None: a chunked body)."""
    host, port = origin
    parts = [
        b"POST ",
        path,
        b" HTTP/1.1\r\nhost: ",
        (f"[{host}]" if ":" in host else host).encode("ascii" if host.isascii() else "idna"),
        b":%d\r\ncontent-type: " % port,
        headers.get(b"content-type", b"application/json"),
        b"\r\naccept-encoding: identity\r\n",
    ]
    accept = headers.get(b"accept")
    if accept:
        parts += (b"accept: ", accept, b"\r\n")
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\n\r\n")
    else:
        parts.append(b"content-length: %d\r\n\r\n" % length)
    return b"".join(parts)


def content_length(headers: dict[bytes, bytes]) -> int | None:
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise GatewayHTTPError(
            400, "The Content-Length header is not a number.", error_type="invalid_request_error"
        ) from None


def may_call(principal: Principal, model: str) -> bool:
    return principal.is_admin or principal.allowed_models is None or model in principal.allowed_models


def stream_error_event(model: str, exc: Exception) -> bytes:
    """An SSE event in the shape OpenAI uses for errors inside a stream (its client raises APIError)."""
    message = f"The instance of model '{model}' failed while streaming: {type(exc).__name__}."
    error = {"message": message, "type": "server_error", "param": None, "code": "upstream_stream_broken"}
    return b"\n\ndata: " + json.dumps({"error": error}).encode() + b"\n\n"


def too_large(limit: int) -> GatewayHTTPError:
    return GatewayHTTPError(
        413,
        f"The request body is larger than this gateway's limit of {limit} bytes; send a smaller request.",
        error_type="invalid_request_error",
        code="request_too_large",
    )


def model_not_found(model: str) -> GatewayHTTPError:
    return GatewayHTTPError(
        404,
        f"The model '{model}' does not exist; GET /v1/models lists the models you can call.",
        error_type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def upstream_timeout(model: str, up: Upstream | None) -> GatewayHTTPError:
    where = f" (instance {up.instance_id})" if up is not None else ""
    return GatewayHTTPError(
        504,
        f"The instance of model '{model}'{where} did not answer in time.",
        error_type="timeout_error",
        code="upstream_timeout",
    )


def upstream_error(model: str, up: Upstream | None, exc: Exception) -> GatewayHTTPError:
    where = f" (instance {up.instance_id})" if up is not None else ""
    return GatewayHTTPError(
        502,
        f"The instance of model '{model}'{where} failed: {type(exc).__name__}: {exc}.",
        error_type="server_error",
        code="upstream_error",
    )
