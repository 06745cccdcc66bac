"""The management REST API under ``/api/v1``: one module per resource, each exposing ``ENDPOINTS``."""

from __future__ import annotations

from ._framework import ApiError, Endpoint, Request, build_routes, openapi_document
from .routes import all_endpoints

__all__ = ["ApiError", "Endpoint", "Request", "all_endpoints", "build_routes", "openapi_document"]
