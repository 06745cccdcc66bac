"""Instance state history: one row per state change (and per new reason while pending).

The store writes an event in the same transaction as the change itself (:func:`record_events`), so
the timeline never disagrees with the instance row. Each instance keeps its last
:data:`MAX_EVENTS_PER_INSTANCE` events (older ones are pruned on insert); the foreign key deletes
them with the instance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from . import schema as t
from ._sql import utcnow
from .records import InstanceEventRecord

__all__ = ["MAX_EVENTS_PER_INSTANCE", "InstanceEventStore", "record_events"]

#: Events kept per instance; inserting one more drops the oldest.
MAX_EVENTS_PER_INSTANCE = 200


def record_events(
    c: sa.Connection, events: Sequence[tuple[str, str, str]], at: dt.datetime | None = None
) -> None:
    """Insert ``(instance id, state, message)`` events on ``c`` (the caller's transaction) and prune
    each instance to its last :data:`MAX_EVENTS_PER_INSTANCE`."""
    if not events:
        return
    now = at or utcnow()
    e = t.instance_events
    c.execute(
        e.insert(),
        [dict(instance_id=iid, at=now, state=state, message=message) for iid, state, message in events],
    )
    for instance_id in {iid for iid, _, _ in events}:
        # the id of the oldest event to keep; portable (MySQL refuses LIMIT inside IN subqueries)
        oldest_kept = c.execute(
            sa.select(e.c.id)
            .where(e.c.instance_id == instance_id)
            .order_by(e.c.id.desc())
            .limit(1)
            .offset(MAX_EVENTS_PER_INSTANCE - 1)
        ).scalar()
        if oldest_kept is not None:
            c.execute(e.delete().where(e.c.instance_id == instance_id, e.c.id < oldest_kept))


class InstanceEventStore:
    """Reads of the instance timeline (mixed into :class:`~gpustack_core.server.store.Store`)."""

    engine: sa.Engine

    def list_instance_events(
        self, instance_id: str, limit: int = MAX_EVENTS_PER_INSTANCE
    ) -> list[InstanceEventRecord]:
        """The last ``limit`` events of an instance, oldest first."""
        e = t.instance_events
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(e).where(e.c.instance_id == instance_id).order_by(e.c.id.desc()).limit(limit)
            ).all()
        return [
            InstanceEventRecord(id=r.id, instance_id=r.instance_id, at=r.at, state=r.state, message=r.message)
            for r in reversed(rows)
        ]
