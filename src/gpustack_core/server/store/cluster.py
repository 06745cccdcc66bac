"""The server's store: every database read and write, each in its own transaction.

Synchronous SQLAlchemy Core on a thread-safe engine; the async server calls it through
``anyio.to_thread``. Writes that must not race are compare-and-set: an instance is placed only by
``UPDATE ... WHERE id = ? AND version = ? AND state = 'pending'``, so two controllers (or a crash
and a retry) can never place one instance twice, and (deployment, replica) is unique.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gpustack_core.types import Deployment, WorkerInfo

from . import schema as t
from ._sql import ConflictError, dump_json, load_json, new_id, upsert, utcnow
from .accounts import AccountStore
from .groups import delete_parts, insert_parts, instances_with_parts_on, load_parts, subordinate_worker_ids
from .instance_events import InstanceEventStore, record_events
from .records import (
    ACTIVE_STATES,
    DeploymentRecord,
    InstanceRecord,
    InstanceState,
    ModelFileRecord,
    WorkerRecord,
)

__all__ = ["Store"]


def _back_to_pending(reason: str) -> dict[str, Any]:
    """Column values that take an instance off its worker, back to pending (version bumped by the caller)."""
    return dict(
        state=InstanceState.PENDING.value,
        worker_id=None,
        placement=None,
        port=None,
        pid=None,
        head_address=None,
        progress=None,
        message=reason,
        state_changed_at=utcnow(),
    )


class Store(InstanceEventStore, AccountStore):
    """Everything :class:`AccountStore` does, plus workers, deployments, instances (with their state
    timeline) and model files."""

    # ------------------------------------------------------------------ workers

    @staticmethod
    def _worker(row: sa.Row[Any]) -> WorkerRecord:
        return WorkerRecord(
            id=row.id,
            name=row.name,
            address=row.address,
            state=row.state,
            info=WorkerInfo.model_validate_json(row.info),
            last_heartbeat_at=row.last_heartbeat_at,
            created_at=row.created_at,
        )

    def register_worker(self, info: WorkerInfo) -> WorkerRecord:
        """Insert a worker, or update the one of the same name (a worker that restarted)."""
        now = utcnow()
        values = dict(
            address=info.address, state=info.state.value, info=info.model_dump_json(), last_heartbeat_at=now
        )
        w = t.workers
        insert = dict(id=new_id(), name=info.name, created_at=now, **values)
        upsert(self.engine, w, (w.c.name == info.name,), values, insert, f"worker {info.name!r}")
        with self.engine.connect() as c:
            row = c.execute(sa.select(w).where(w.c.name == info.name)).one()
        return self._worker(row)

    def heartbeat(self, worker_id: str, info: WorkerInfo) -> bool:
        """Store a worker's latest status; ``False`` when the worker is unknown (it must register)."""
        with self.engine.begin() as c:
            updated = c.execute(
                t.workers.update()
                .where(t.workers.c.id == worker_id)
                .values(state=info.state.value, info=info.model_dump_json(), last_heartbeat_at=utcnow())
            )
        return updated.rowcount > 0

    def get_worker(self, worker_id: str) -> WorkerRecord | None:
        """A worker by id or by name."""
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(t.workers).where(sa.or_(t.workers.c.id == worker_id, t.workers.c.name == worker_id))
            ).first()
        return None if row is None else self._worker(row)

    def list_workers(
        self, limit: int = 1000, offset: int = 0, state: str | None = None
    ) -> tuple[list[WorkerRecord], int]:
        """A page of workers by name."""
        where = [] if state is None else [t.workers.c.state == state]
        return self._page(t.workers, where, t.workers.c.name, limit, offset, self._worker)

    def mark_unreachable(self, cutoff: dt.datetime) -> list[str]:
        """Mark workers whose last heartbeat is before ``cutoff`` unreachable; returns their ids."""
        with self.engine.begin() as c:
            ids = list(
                c.execute(
                    sa.select(t.workers.c.id).where(
                        t.workers.c.last_heartbeat_at < cutoff, t.workers.c.state != "unreachable"
                    )
                ).scalars()
            )
            if ids:
                c.execute(t.workers.update().where(t.workers.c.id.in_(ids)).values(state="unreachable"))
        return ids

    def delete_worker(self, worker_id: str) -> bool:
        """Forget a worker; its instances go back to pending."""
        with self.engine.begin() as c:
            self._requeue(c, [worker_id], "its worker was removed")
            return c.execute(t.workers.delete().where(t.workers.c.id == worker_id)).rowcount > 0

    # ------------------------------------------------------------------ deployments

    @staticmethod
    def _deployment(row: sa.Row[Any]) -> DeploymentRecord:
        return DeploymentRecord(
            id=row.id,
            name=row.name,
            spec=Deployment.model_validate_json(row.spec),
            replicas=row.replicas,
            deleting=row.deleting,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def create_deployment(self, spec: Deployment) -> DeploymentRecord:
        """Store a new deployment; :class:`ConflictError` when the name is taken."""
        now = utcnow()
        values = dict(
            id=new_id(),
            name=spec.name,
            spec=spec.model_dump_json(),
            replicas=spec.replicas,
            deleting=False,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.engine.begin() as c:
                c.execute(t.deployments.insert().values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"a deployment named {spec.name!r} already exists") from exc
        return DeploymentRecord(**{**values, "spec": spec})

    def get_deployment(self, ref: str) -> DeploymentRecord | None:
        """A deployment by id or name."""
        d = t.deployments
        with self.engine.connect() as c:
            row = c.execute(sa.select(d).where(sa.or_(d.c.id == ref, d.c.name == ref))).first()
        return None if row is None else self._deployment(row)

    def list_deployments(
        self, limit: int = 1000, offset: int = 0, name_contains: str | None = None
    ) -> tuple[list[DeploymentRecord], int]:
        """A page of deployments by name."""
        where = [] if not name_contains else [t.deployments.c.name.contains(name_contains, autoescape=True)]
        return self._page(t.deployments, where, t.deployments.c.name, limit, offset, self._deployment)

    def update_deployment(self, deployment_id: str, spec: Deployment) -> DeploymentRecord | None:
        """Replace a deployment's spec (the name cannot change)."""
        with self.engine.begin() as c:
            c.execute(
                t.deployments.update()
                .where(t.deployments.c.id == deployment_id)
                .values(spec=spec.model_dump_json(), replicas=spec.replicas, updated_at=utcnow())
            )
        return self.get_deployment(deployment_id)

    def mark_deployment_deleting(self, deployment_id: str) -> None:
        """Start deleting: replicas go to zero and every instance's desired state to stopped."""
        with self.engine.begin() as c:
            c.execute(
                t.deployments.update()
                .where(t.deployments.c.id == deployment_id)
                .values(deleting=True, replicas=0, updated_at=utcnow())
            )
            c.execute(
                t.instances.update()
                .where(t.instances.c.deployment_id == deployment_id)
                .values(desired="stopped", version=t.instances.c.version + 1)
            )

    def restart_deployment(self, deployment_id: str) -> int:
        """Ask every instance of a deployment to stop; the controller then creates fresh ones."""
        i = t.instances
        with self.engine.begin() as c:
            return c.execute(
                i.update()
                .where(i.c.deployment_id == deployment_id, i.c.desired == "running")
                .values(desired="stopped", version=i.c.version + 1)
            ).rowcount

    def delete_deployment_row(self, deployment_id: str) -> bool:
        """Remove a deployment once it has no instances left; ``False`` while some remain."""
        with self.engine.begin() as c:
            left = c.execute(
                sa.select(sa.func.count())
                .select_from(t.instances)
                .where(t.instances.c.deployment_id == deployment_id)
            ).scalar_one()
            if left:
                return False
            return c.execute(t.deployments.delete().where(t.deployments.c.id == deployment_id)).rowcount > 0

    # ------------------------------------------------------------------ instances

    def _instance_query(self) -> sa.Select[Any]:
        i, d, w = t.instances, t.deployments, t.workers
        return (
            sa.select(i, d.c.name.label("deployment_name"), w.c.name.label("worker_name"))
            .join(d, d.c.id == i.c.deployment_id)
            .outerjoin(w, w.c.id == i.c.worker_id)
        )

    @staticmethod
    def _instance(row: sa.Row[Any]) -> InstanceRecord:
        return InstanceRecord(
            id=row.id,
            deployment_id=row.deployment_id,
            deployment=row.deployment_name,
            replica=row.replica,
            state=InstanceState(row.state),
            desired=row.desired,
            message=row.message,
            worker_id=row.worker_id,
            worker=row.worker_name,
            placement=load_json(row.placement),
            explanation=load_json(row.explanation),
            port=row.port,
            pid=row.pid,
            download=load_json(row.download),
            progress=load_json(row.progress),
            restarts=row.restarts,
            version=row.version,
            state_changed_at=row.state_changed_at,
            created_at=row.created_at,
            head_address=row.head_address,
        )

    @staticmethod
    def _with_parts(c: sa.Connection, records: list[InstanceRecord]) -> list[InstanceRecord]:
        """The records with their subordinate parts attached (one query for all of them)."""
        parts = load_parts(
            c, [r.id for r in records if r.placement and r.placement.get("subordinate_workers")]
        )
        return [r.model_copy(update={"parts": parts[r.id]}) if r.id in parts else r for r in records]

    def list_instances(
        self,
        limit: int = 10000,
        offset: int = 0,
        *,
        deployment_id: str | None = None,
        worker_id: str | None = None,
        states: Iterable[str] | None = None,
    ) -> tuple[list[InstanceRecord], int]:
        """A page of instances by deployment and replica, filtered."""
        i = t.instances
        where: list[Any] = []
        if deployment_id is not None:
            where.append(i.c.deployment_id == deployment_id)
        if worker_id is not None:
            where.append(i.c.worker_id == worker_id)
        if states is not None:
            where.append(i.c.state.in_(list(states)))
        query = self._instance_query().where(*where)
        with self.engine.connect() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(i).where(*where)).scalar_one()
            rows = c.execute(
                query.order_by(i.c.deployment_id, i.c.replica).limit(limit).offset(offset)
            ).fetchall()
            return self._with_parts(c, [self._instance(r) for r in rows]), int(total)

    def worker_assignments(self, worker_id: str) -> list[tuple[InstanceRecord, Deployment, int]]:
        """What a worker runs, each with its deployment's spec and the worker's rank in it: the
        instances it heads (rank 0) and the parts of multi-worker instances placed on it (rank >= 1).
        Every instance comes with all its parts, so the head sees where its subordinates listen."""
        i, p = t.instances, t.instance_parts
        part_of = sa.select(p.c.instance_id).where(p.c.worker_id == worker_id)
        query = (
            self._instance_query()
            .add_columns(t.deployments.c.spec.label("deployment_spec"))
            .where(sa.or_(i.c.worker_id == worker_id, i.c.id.in_(part_of)))
            .order_by(i.c.deployment_id, i.c.replica)
        )
        with self.engine.connect() as c:
            rows = c.execute(query).fetchall()
            records = self._with_parts(c, [self._instance(r) for r in rows])
        specs: dict[str, Deployment] = {}
        out = []
        for row, record in zip(rows, records, strict=True):
            spec = specs.get(row.deployment_id)
            if spec is None:
                spec = specs[row.deployment_id] = Deployment.model_validate_json(row.deployment_spec)
            if record.worker_id == worker_id:
                out.append((record, spec, 0))
            out.extend((record, spec, part.rank) for part in record.parts if part.worker_id == worker_id)
        return out

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """An instance by id."""
        with self.engine.connect() as c:
            row = c.execute(self._instance_query().where(t.instances.c.id == instance_id)).first()
            return None if row is None else self._with_parts(c, [self._instance(row)])[0]

    def ensure_replicas(self, deployment_id: str, replicas: int) -> tuple[int, int]:
        """Create pending instances for missing replica numbers below ``replicas`` and ask the ones at
        or above it to stop. Returns ``(created, asked to stop)``; the unique (deployment, replica)
        constraint makes concurrent calls safe."""
        return self.ensure_replicas_many([(deployment_id, replicas)])

    def ensure_replicas_many(self, wanted: Sequence[tuple[str, int]]) -> tuple[int, int]:
        """:meth:`ensure_replicas` for several ``(deployment id, replicas)`` in one transaction."""
        i = t.instances
        now = utcnow()
        created = stopped = 0
        with self.engine.begin() as c:
            ids = [dep_id for dep_id, _ in wanted]
            have: dict[str, set[int]] = {dep_id: set() for dep_id in ids}
            for dep_id, replica in c.execute(
                sa.select(i.c.deployment_id, i.c.replica).where(i.c.deployment_id.in_(ids))
            ):
                have[dep_id].add(replica)
            rows = [
                dict(
                    id=new_id(),
                    deployment_id=dep_id,
                    replica=replica,
                    state=InstanceState.PENDING.value,
                    desired="running",
                    message="waiting to be scheduled",
                    restarts=0,
                    version=0,
                    state_changed_at=now,
                    created_at=now,
                )
                for dep_id, replicas in wanted
                for replica in range(replicas)
                if replica not in have[dep_id]
            ]
            if rows:
                c.execute(i.insert(), rows)
                created = len(rows)
                record_events(c, [(str(r["id"]), str(r["state"]), str(r["message"])) for r in rows], now)
            for dep_id, replicas in wanted:
                if any(r >= replicas for r in have[dep_id]):
                    stopped += c.execute(
                        i.update()
                        .where(i.c.deployment_id == dep_id, i.c.replica >= replicas, i.c.desired == "running")
                        .values(desired="stopped", version=i.c.version + 1)
                    ).rowcount
        return created, stopped

    def place(self, instance_id: str, version: int, worker_id: str, placement: dict[str, Any]) -> bool:
        """Place a pending instance on a worker, only if nobody changed it since ``version`` was read.

        A placement with ``subordinate_workers`` also creates the instance's parts (rank 1, 2, ...),
        in the same transaction; ``False`` when one of those workers is not registered."""
        i = t.instances
        with self.engine.begin() as c:
            subordinates = subordinate_worker_ids(c, placement)
            if subordinates is None:
                return False
            result = c.execute(
                i.update()
                .where(
                    i.c.id == instance_id, i.c.version == version, i.c.state == InstanceState.PENDING.value
                )
                .values(
                    state=InstanceState.SCHEDULED.value,
                    worker_id=worker_id,
                    placement=dump_json(placement),
                    explanation=None,
                    message="",
                    version=version + 1,
                    state_changed_at=utcnow(),
                )
            )
            if result.rowcount == 1:
                delete_parts(c, [instance_id])
                insert_parts(c, instance_id, subordinates)
                worker = c.execute(sa.select(t.workers.c.name).where(t.workers.c.id == worker_id)).scalar()
                record_events(
                    c, [(instance_id, InstanceState.SCHEDULED.value, f"placed on {worker or worker_id}")]
                )
        return result.rowcount == 1

    def explain_pending(
        self, instance_id: str, version: int, message: str, explanation: dict[str, Any]
    ) -> None:
        """Record why a pending instance could not be placed (no version bump: not a placement)."""
        i = t.instances
        with self.engine.begin() as c:
            before = c.execute(sa.select(i.c.message).where(i.c.id == instance_id)).scalar()
            updated = c.execute(
                i.update()
                .where(
                    i.c.id == instance_id, i.c.version == version, i.c.state == InstanceState.PENDING.value
                )
                .values(message=message, explanation=dump_json(explanation))
            ).rowcount
            if updated and before != message:  # a new reason, not the same one every controller pass
                record_events(c, [(instance_id, InstanceState.PENDING.value, message)])

    def report(
        self,
        instance_id: str,
        worker_id: str,
        state: InstanceState,
        *,
        message: str = "",
        port: int | None = None,
        pid: int | None = None,
        download: dict[str, Any] | None = None,
        head_address: str | None = None,
        version: int | None = None,
        progress: dict[str, Any] | None = None,
    ) -> InstanceRecord | None:
        """A worker's report of one instance it runs; ignored (``None``) when the instance is no
        longer placed on that worker (it was rescheduled while the worker was away), or when
        ``version`` is given and the instance has moved on since (a report about the process of an
        earlier placement, e.g. of a group that restarted on the same workers).

        ``progress`` is what the current state waits for; a change of state without one clears it."""
        i = t.instances
        values: dict[str, Any] = {"state": state.value, "message": message}
        if head_address is not None:
            values["head_address"] = head_address
        if port is not None:
            values["port"] = port
        if pid is not None:
            values["pid"] = pid
        if download is not None:
            values["download"] = dump_json(download)
        where = [i.c.id == instance_id, i.c.worker_id == worker_id]
        if version is not None:
            where.append(i.c.version == version)
        if progress is not None:
            values["progress"] = dump_json(progress)
        with self.engine.begin() as c:
            current = c.execute(sa.select(i.c.state).where(*where)).scalar()
            if current is None:
                return None
            if current != state.value:
                values["state_changed_at"] = utcnow()
                values.setdefault("progress", None)
            c.execute(i.update().where(*where).values(**values))
            if current != state.value:
                record_events(c, [(instance_id, state.value, message)], values["state_changed_at"])
        return self.get_instance(instance_id)

    def requeue_workers(self, worker_ids: Sequence[str], reason: str) -> int:
        """Send the instances of these workers back to pending (rescheduling); returns how many."""
        with self.engine.begin() as c:
            return self._requeue(c, worker_ids, reason)

    @staticmethod
    def _requeue(c: sa.Connection, worker_ids: Sequence[str], reason: str) -> int:
        """Instances headed by these workers, or with a part on one of them (the whole group
        restarts), go back to pending; those asked to stop are deleted."""
        i = t.instances
        if not worker_ids:
            return 0
        affected = sa.or_(
            i.c.worker_id.in_(list(worker_ids)), i.c.id.in_(instances_with_parts_on(c, worker_ids))
        )
        # Instances already asked to stop have nowhere to go: delete them instead.
        c.execute(i.delete().where(affected, i.c.desired == "stopped"))
        ids = list(c.execute(sa.select(i.c.id).where(affected)).scalars())
        if not ids:
            return 0
        delete_parts(c, ids)
        moved = c.execute(
            i.update().where(i.c.id.in_(ids)).values(version=i.c.version + 1, **_back_to_pending(reason))
        ).rowcount
        record_events(c, [(iid, InstanceState.PENDING.value, reason) for iid in ids])
        return moved

    def forget_old_restarts(self, running_since: dt.datetime) -> int:
        """Set ``restarts`` back to 0 on instances running since ``running_since`` or earlier.

        The restart count sets the retry backoff; an instance that has served for a while starts
        afresh, so one crash a week does not wait the maximum delay. Returns how many changed.
        """
        i = t.instances
        with self.engine.begin() as c:
            return c.execute(
                i.update()
                .where(
                    i.c.state == InstanceState.RUNNING.value,
                    i.c.restarts > 0,
                    i.c.state_changed_at <= running_since,
                )
                .values(restarts=0)
            ).rowcount

    def retry_instance(self, instance_id: str, version: int, reason: str) -> bool:
        """Move an errored instance back to pending for another placement (restart with backoff)."""
        i = t.instances
        with self.engine.begin() as c:
            retried = (
                c.execute(
                    i.update()
                    .where(
                        i.c.id == instance_id, i.c.version == version, i.c.state == InstanceState.ERROR.value
                    )
                    .values(restarts=i.c.restarts + 1, version=version + 1, **_back_to_pending(reason))
                ).rowcount
                == 1
            )
            if retried:
                delete_parts(c, [instance_id])
                record_events(c, [(instance_id, InstanceState.PENDING.value, reason)])
            return retried

    def report_part(
        self,
        instance_id: str,
        rank: int,
        worker_id: str,
        state: InstanceState,
        *,
        message: str = "",
        address: str | None = None,
        port: int | None = None,
        pid: int | None = None,
        version: int | None = None,
    ) -> bool:
        """A worker's report of the part it runs for a multi-worker instance; ``False`` (ignored)
        when that part is no longer placed on the worker.

        A part in ``error`` puts the whole instance in ``error`` (when it is meant to run): the
        controller then restarts the group with the usual backoff. With ``version``, a report about
        an earlier placement of the instance is ignored."""
        i, p = t.instances, t.instance_parts
        values: dict[str, Any] = {"state": state.value, "message": message}
        for key, value in (("address", address), ("port", port), ("pid", pid)):
            if value is not None:
                values[key] = value
        where = (p.c.instance_id == instance_id, p.c.rank == rank, p.c.worker_id == worker_id)
        with self.engine.begin() as c:
            if version is not None:
                now = c.execute(sa.select(i.c.version).where(i.c.id == instance_id)).scalar()
                if now != version:
                    return False
            current = c.execute(sa.select(p.c.state).where(*where)).scalar()
            if current is None:
                return False
            if current != state.value:
                values["state_changed_at"] = utcnow()
            c.execute(p.update().where(*where).values(**values))
            if state == InstanceState.ERROR:
                worker = c.execute(sa.select(t.workers.c.name).where(t.workers.c.id == worker_id)).scalar()
                failed = f"rank {rank} on worker {worker or worker_id} failed: {message}"
                errored = c.execute(
                    i.update()
                    .where(
                        i.c.id == instance_id,
                        i.c.desired == "running",
                        i.c.state.in_([s.value for s in ACTIVE_STATES]),
                    )
                    .values(state=InstanceState.ERROR.value, message=failed, state_changed_at=utcnow())
                ).rowcount
                if errored:
                    record_events(c, [(instance_id, InstanceState.ERROR.value, failed)])
        return True

    def delete_instance(self, instance_id: str) -> bool:
        """Delete an instance row (after its process stopped, or when it never ran)."""
        with self.engine.begin() as c:
            return c.execute(t.instances.delete().where(t.instances.c.id == instance_id)).rowcount > 0

    # ------------------------------------------------------------------ model files

    @staticmethod
    def _model_file(row: sa.Row[Any]) -> ModelFileRecord:
        return ModelFileRecord(
            id=row.id,
            worker_id=row.worker_id,
            model=row.model,
            state=row.state,
            downloaded_bytes=row.downloaded_bytes,
            total_bytes=row.total_bytes,
            paths=tuple(load_json(row.paths)),
            message=row.message,
            updated_at=row.updated_at,
        )

    def put_model_file(
        self,
        worker_id: str,
        model: str,
        state: str,
        downloaded_bytes: int,
        total_bytes: int | None,
        paths: Sequence[str] = (),
        message: str = "",
    ) -> None:
        """Insert or update the download record of a model on a worker."""
        m = t.model_files
        values = dict(
            state=state,
            downloaded_bytes=downloaded_bytes,
            total_bytes=total_bytes,
            paths=json.dumps(list(paths)),
            message=message,
            updated_at=utcnow(),
        )
        upsert(
            self.engine,
            m,
            (m.c.worker_id == worker_id, m.c.model == model),
            values,
            dict(id=new_id(), worker_id=worker_id, model=model, **values),
            f"the download state of {model!r}",
        )

    def list_model_files(
        self, limit: int, offset: int, worker_id: str | None = None
    ) -> tuple[list[ModelFileRecord], int]:
        """A page of model files, by model."""
        where = [] if worker_id is None else [t.model_files.c.worker_id == worker_id]
        return self._page(t.model_files, where, t.model_files.c.model, limit, offset, self._model_file)
