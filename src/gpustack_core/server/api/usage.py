"""Token usage per user, key, model and day (written by the OpenAI gateway)."""

from __future__ import annotations

from gpustack_core.server.store.records import Page, UsageRow

from ._common import PAGE_QUERY, page, page_args
from ._framework import Endpoint, Query, Request

__all__ = ["ENDPOINTS"]


async def list_usage(req: Request) -> Page:
    """Usage rows, newest day first; non-admins see only their own."""
    caller = req.require_caller()
    user_id = req.query["user_id"] if caller.is_admin else caller.user.id
    limit, offset = page_args(req)
    if req.services.flush_usage is not None:
        await req.services.flush_usage()  # include every request that has finished
    return page(
        await req.db(
            req.services.store.query_usage,
            limit,
            offset,
            user_id=user_id,
            key_id=req.query["key_id"],
            model=req.query["model"],
            day_from=req.query["from"],
            day_to=req.query["to"],
        ),
        req,
    )


ENDPOINTS = (
    Endpoint(
        "GET",
        "/usage",
        list_usage,
        "token usage per user, key, model and day",
        "usage",
        auth="user",
        list_of=UsageRow,
        query=(
            *PAGE_QUERY,
            Query("user_id", "str", "admins: this user"),
            Query("key_id", "str", "this key"),
            Query("model", "str", "this model"),
            Query("from", "date", "first day (YYYY-MM-DD)"),
            Query("to", "date", "last day (YYYY-MM-DD)"),
        ),
    ),
)
