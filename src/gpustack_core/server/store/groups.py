"""Instance groups: the subordinate parts of a multi-worker instance, read and written inside the
store's transactions.

A placement with ``subordinate_workers`` becomes one instance row (rank 0, the head) plus one
``instance_parts`` row per subordinate (rank 1, 2, ...), created in the transaction that places the
instance. Parts never outlive their placement: sending the instance back to pending deletes them,
and deleting the instance deletes them (foreign key cascade), so a worker that no longer finds its
part among its assignments stops the process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from . import schema as t
from ._sql import utcnow
from .records import InstancePartRecord, InstanceState

__all__ = [
    "delete_parts",
    "insert_parts",
    "instances_with_parts_on",
    "load_parts",
    "subordinate_worker_ids",
]


def subordinate_worker_ids(c: sa.Connection, placement: dict[str, Any]) -> list[str] | None:
    """Worker ids of the placement's subordinate workers, in rank order; ``None`` when one of them
    is not registered (the placement is stale)."""
    names = [str(n) for n in placement.get("subordinate_workers") or ()]
    if not names:
        return []
    w = t.workers
    ids = {row.name: row.id for row in c.execute(sa.select(w.c.name, w.c.id).where(w.c.name.in_(names)))}
    if any(n not in ids for n in names):
        return None
    return [ids[n] for n in names]


def insert_parts(c: sa.Connection, instance_id: str, worker_ids: Sequence[str]) -> None:
    """One ``scheduled`` part per subordinate worker, ranks from 1."""
    if not worker_ids:
        return
    now = utcnow()
    c.execute(
        t.instance_parts.insert(),
        [
            dict(
                instance_id=instance_id,
                rank=rank,
                worker_id=worker_id,
                state=InstanceState.SCHEDULED.value,
                message="",
                state_changed_at=now,
            )
            for rank, worker_id in enumerate(worker_ids, start=1)
        ],
    )


def delete_parts(c: sa.Connection, instance_ids: Iterable[str]) -> None:
    """Forget the parts of these instances (their workers then stop the processes)."""
    ids = list(instance_ids)
    if ids:
        c.execute(t.instance_parts.delete().where(t.instance_parts.c.instance_id.in_(ids)))


def instances_with_parts_on(c: sa.Connection, worker_ids: Sequence[str]) -> list[str]:
    """Ids of instances that have a part on one of these workers."""
    p = t.instance_parts
    return list(
        c.execute(sa.select(p.c.instance_id).where(p.c.worker_id.in_(list(worker_ids))).distinct()).scalars()
    )


def load_parts(c: sa.Connection, instance_ids: Iterable[str]) -> dict[str, tuple[InstancePartRecord, ...]]:
    """The parts of these instances by instance id, in rank order (instances without parts absent)."""
    ids = list(instance_ids)
    if not ids:
        return {}
    p, w = t.instance_parts, t.workers
    out: dict[str, list[InstancePartRecord]] = {}
    # chunked: some dialects limit the number of bound parameters
    for start in range(0, len(ids), 500):
        rows = c.execute(
            sa.select(p, w.c.name.label("worker_name"))
            .outerjoin(w, w.c.id == p.c.worker_id)
            .where(p.c.instance_id.in_(ids[start : start + 500]))
            .order_by(p.c.instance_id, p.c.rank)
        ).fetchall()
        for row in rows:
            out.setdefault(row.instance_id, []).append(
                InstancePartRecord(
                    rank=row.rank,
                    worker_id=row.worker_id,
                    worker=row.worker_name,
                    state=InstanceState(row.state),
                    message=row.message,
                    address=row.address,
                    port=row.port,
                    pid=row.pid,
                    state_changed_at=row.state_changed_at,
                )
            )
    return {k: tuple(v) for k, v in out.items()}
