"""Helpers shared by the resource modules: pagination, lookups that 404, and ownership checks."""

from __future__ import annotations

from typing import Any

from gpustack_core.server.store.records import Page

from ._framework import ApiError, Query, Request

__all__ = ["PAGE_QUERY", "not_found", "page", "page_args"]

PAGE_QUERY = (
    Query("limit", "int", "page size (1-1000)", 100, minimum=1, maximum=1000),
    Query("offset", "int", "items to skip", 0, minimum=0),
)


def page_args(req: Request) -> tuple[int, int]:
    """``(limit, offset)`` from the query."""
    return int(req.query["limit"]), int(req.query["offset"])


def page(items_total: tuple[list[Any], int], req: Request) -> Page:
    """A :class:`Page` from a store answer ``(items, total)``."""
    items, total = items_total
    limit, offset = page_args(req)
    return Page(items=items, total=total, limit=limit, offset=offset)


def not_found(what: str, ref: str) -> ApiError:
    """A 404 naming what was looked for."""
    return ApiError(404, f"{what} {ref!r} not found")
