"""OpenAI-style error responses: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json

from starlette.responses import Response

__all__ = ["GatewayHTTPError", "error_response"]


class GatewayHTTPError(Exception):
    """A request the gateway answers itself with an OpenAI-style error body.

    ``error_type`` follows OpenAI's values (``invalid_request_error``, ``authentication_error``,
    ``permission_error``, ``not_found_error``, ``server_error``, ``timeout_error``); ``code`` is a
    stable machine-readable string (``model_not_found``, ``no_running_instance`` ...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Build an error with the HTTP ``status``, the body's fields and extra response ``headers``."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers: list[tuple[bytes, bytes]] = list(headers or ())

    def response(self) -> Response:
        """The error as a JSON response (with the extra headers)."""
        response = error_response(
            self.status, self.message, self.error_type, param=self.param, code=self.code
        )
        response.raw_headers.extend(self.headers)
        return response


def error_response(
    status: int, message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> Response:
    """A JSON response with an OpenAI-style error body."""
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return Response(
        json.dumps(body).encode(), status_code=status, media_type="application/json", headers=headers
    )
