"""An instance's state timeline: every state it entered, when, and why (kept by the store)."""

from __future__ import annotations

from gpustack_core.server.store.instance_events import MAX_EVENTS_PER_INSTANCE
from gpustack_core.server.store.records import InstanceEventRecord, Page

from ._common import not_found
from ._framework import Endpoint, Request

__all__ = ["ENDPOINTS"]


async def instance_events(req: Request) -> Page:
    """The instance's state timeline, oldest first (its last events; older ones are pruned)."""
    instance_id = req.path_params["instance_id"]
    store = req.services.store
    if await req.db(store.get_instance, instance_id) is None:
        raise not_found("instance", instance_id)
    events = await req.db(store.list_instance_events, instance_id)
    return Page(items=events, total=len(events), limit=MAX_EVENTS_PER_INSTANCE, offset=0)


ENDPOINTS = (
    Endpoint(
        "GET",
        "/instances/{instance_id}/events",
        instance_events,
        f"an instance's state timeline (its last {MAX_EVENTS_PER_INSTANCE} state changes, oldest first)",
        "instances",
        list_of=InstanceEventRecord,
    ),
)
