"""The server's store: every database read and write, each in its own transaction.

Synchronous SQLAlchemy Core on a thread-safe engine; the async server calls it through
``anyio.to_thread``. Writes that must not race are compare-and-set: an instance is placed only by
``UPDATE ... WHERE id = ? AND version = ? AND state = 'pending'``, so two controllers (or a crash
and a retry) can never place one instance twice, and (deployment, replica) is unique.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..types import Deployment, WorkerInfo
from . import schema as t
from .records import (
    ACTIVE_STATES,
    ApiKeyRecord,
    DeploymentRecord,
    InstanceRecord,
    InstanceState,
    ModelFileRecord,
    UsageRow,
    UserRecord,
    WorkerRecord,
)

__all__ = ["ConflictError", "Store", "utcnow"]


class ConflictError(Exception):
    """A write lost a race or broke a uniqueness rule; the message says which."""


def utcnow() -> dt.datetime:
    """Naive UTC now, as stored in the database (whole microseconds dropped for MySQL)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _new_id() -> str:
    return str(uuid.uuid4())


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


class Store:
    """Reads and writes of users, keys, workers, deployments, instances, model files and usage."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ settings

    def get_setting(self, key: str) -> str | None:
        """A stored setting, or ``None``."""
        with self.engine.connect() as c:
            return c.execute(sa.select(t.settings.c.value).where(t.settings.c.key == key)).scalar()

    def put_setting(self, key: str, value: str) -> None:
        """Insert or replace a setting."""
        with self.engine.begin() as c:
            if c.execute(t.settings.update().where(t.settings.c.key == key).values(value=value)).rowcount == 0:
                c.execute(t.settings.insert().values(key=key, value=value))

    # ------------------------------------------------------------------ users

    @staticmethod
    def _user(row: sa.Row[Any]) -> UserRecord:
        return UserRecord(
            id=row.id, username=row.username, role=row.role, disabled=row.disabled, created_at=row.created_at
        )

    def create_user(self, username: str, password_hash: str, role: str) -> UserRecord:
        """Add a user; :class:`ConflictError` when the name is taken."""
        values = dict(
            id=_new_id(),
            username=username,
            password_hash=password_hash,
            role=role,
            disabled=False,
            created_at=utcnow(),
        )
        try:
            with self.engine.begin() as c:
                c.execute(t.users.insert().values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"a user named {username!r} already exists") from exc
        return UserRecord(**{k: v for k, v in values.items() if k != "password_hash"})

    def user_count(self) -> int:
        """Number of users."""
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t.users)).scalar_one())

    def get_user(self, user_id: str) -> UserRecord | None:
        """A user by id."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.users).where(t.users.c.id == user_id)).first()
        return None if row is None else self._user(row)

    def get_user_login(self, username: str) -> tuple[UserRecord, str] | None:
        """A user by name with the password hash, for login."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.users).where(t.users.c.username == username)).first()
        return None if row is None else (self._user(row), row.password_hash)

    def list_users(self, limit: int, offset: int, role: str | None = None) -> tuple[list[UserRecord], int]:
        """A page of users ordered by name, and the total."""
        where = [] if role is None else [t.users.c.role == role]
        return self._page(t.users, where, t.users.c.username, limit, offset, self._user)

    def update_user(
        self, user_id: str, *, role: str | None = None, password_hash: str | None = None, disabled: bool | None = None
    ) -> UserRecord | None:
        """Change a user's role, password or disabled flag."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled"] = disabled
        if values:
            with self.engine.begin() as c:
                c.execute(t.users.update().where(t.users.c.id == user_id).values(**values))
        return self.get_user(user_id)

    def delete_user(self, user_id: str) -> bool:
        """Delete a user and their keys."""
        with self.engine.begin() as c:
            c.execute(t.api_keys.delete().where(t.api_keys.c.user_id == user_id))
            return c.execute(t.users.delete().where(t.users.c.id == user_id)).rowcount > 0

    # ------------------------------------------------------------------ API keys and sessions

    @staticmethod
    def _key(row: sa.Row[Any]) -> ApiKeyRecord:
        allowed = _loads(row.allowed_models)
        return ApiKeyRecord(
            id=row.id,
            user_id=row.user_id,
            name=row.name,
            kind=row.kind,
            scopes=tuple(_loads(row.scopes)),
            allowed_models=None if allowed is None else tuple(allowed),
            expires_at=row.expires_at,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
        )

    def create_key(
        self,
        key_id: str,
        user_id: str,
        name: str,
        kind: str,
        secret_hash: str,
        scopes: Sequence[str],
        allowed_models: Sequence[str] | None,
        expires_at: dt.datetime | None,
    ) -> ApiKeyRecord:
        """Store a key (or session) by the hash of its secret."""
        values = dict(
            id=key_id,
            user_id=user_id,
            name=name,
            kind=kind,
            secret_hash=secret_hash,
            scopes=json.dumps(sorted(scopes)),
            allowed_models=_dumps(None if allowed_models is None else sorted(allowed_models)),
            expires_at=expires_at,
            created_at=utcnow(),
            last_used_at=None,
        )
        with self.engine.begin() as c:
            c.execute(t.api_keys.insert().values(**values))
            row = c.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).one()
        return self._key(row)

    def get_key(self, key_id: str) -> tuple[ApiKeyRecord, str] | None:
        """A key by id with its secret hash, for authentication."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        return None if row is None else (self._key(row), row.secret_hash)

    def touch_key(self, key_id: str) -> None:
        """Record that a key was used now."""
        with self.engine.begin() as c:
            c.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(last_used_at=utcnow()))

    def list_keys(self, limit: int, offset: int, user_id: str | None = None) -> tuple[list[ApiKeyRecord], int]:
        """A page of API keys (sessions excluded), newest first."""
        where: list[Any] = [t.api_keys.c.kind == "key"]
        if user_id is not None:
            where.append(t.api_keys.c.user_id == user_id)
        return self._page(t.api_keys, where, t.api_keys.c.created_at.desc(), limit, offset, self._key)

    def delete_key(self, key_id: str) -> bool:
        """Revoke a key or session."""
        with self.engine.begin() as c:
            return c.execute(t.api_keys.delete().where(t.api_keys.c.id == key_id)).rowcount > 0

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
        with self.engine.begin() as c:
            updated = c.execute(t.workers.update().where(t.workers.c.name == info.name).values(**values))
            if updated.rowcount == 0:
                c.execute(t.workers.insert().values(id=_new_id(), name=info.name, created_at=now, **values))
            row = c.execute(sa.select(t.workers).where(t.workers.c.name == info.name)).one()
        return self._worker(row)

    def heartbeat(self, worker_id: str, info: WorkerInfo) -> WorkerRecord | None:
        """Store a worker's latest status; ``None`` when the worker is unknown (it must register)."""
        with self.engine.begin() as c:
            updated = c.execute(
                t.workers.update()
                .where(t.workers.c.id == worker_id)
                .values(state=info.state.value, info=info.model_dump_json(), last_heartbeat_at=utcnow())
            )
            if updated.rowcount == 0:
                return None
            row = c.execute(sa.select(t.workers).where(t.workers.c.id == worker_id)).one()
        return self._worker(row)

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
            id=_new_id(),
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
            placement=_loads(row.placement),
            explanation=_loads(row.explanation),
            port=row.port,
            pid=row.pid,
            download=_loads(row.download),
            restarts=row.restarts,
            version=row.version,
            state_changed_at=row.state_changed_at,
            created_at=row.created_at,
        )

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
        return [self._instance(r) for r in rows], int(total)

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        """An instance by id."""
        with self.engine.connect() as c:
            row = c.execute(self._instance_query().where(t.instances.c.id == instance_id)).first()
        return None if row is None else self._instance(row)

    def ensure_replicas(self, deployment_id: str, replicas: int) -> tuple[int, int]:
        """Create pending instances for missing replica numbers below ``replicas`` and ask the ones at
        or above it to stop. Returns ``(created, asked to stop)``; the unique (deployment, replica)
        constraint makes concurrent calls safe."""
        i = t.instances
        now = utcnow()
        created = 0
        with self.engine.begin() as c:
            have = set(c.execute(sa.select(i.c.replica).where(i.c.deployment_id == deployment_id)).scalars())
            for replica in range(replicas):
                if replica in have:
                    continue
                c.execute(
                    i.insert().values(
                        id=_new_id(),
                        deployment_id=deployment_id,
                        replica=replica,
                        state=InstanceState.PENDING.value,
                        desired="running",
                        message="waiting to be scheduled",
                        restarts=0,
                        version=0,
                        state_changed_at=now,
                        created_at=now,
                    )
                )
                created += 1
            stopped = c.execute(
                i.update()
                .where(i.c.deployment_id == deployment_id, i.c.replica >= replicas, i.c.desired == "running")
                .values(desired="stopped", version=i.c.version + 1)
            ).rowcount
        return created, stopped

    def place(self, instance_id: str, version: int, worker_id: str, placement: dict[str, Any]) -> bool:
        """Place a pending instance on a worker, only if nobody changed it since ``version`` was read."""
        i = t.instances
        with self.engine.begin() as c:
            result = c.execute(
                i.update()
                .where(i.c.id == instance_id, i.c.version == version, i.c.state == InstanceState.PENDING.value)
                .values(
                    state=InstanceState.SCHEDULED.value,
                    worker_id=worker_id,
                    placement=_dumps(placement),
                    explanation=None,
                    message="",
                    version=version + 1,
                    state_changed_at=utcnow(),
                )
            )
        return result.rowcount == 1

    def explain_pending(self, instance_id: str, version: int, message: str, explanation: dict[str, Any]) -> None:
        """Record why a pending instance could not be placed (no version bump: not a placement)."""
        i = t.instances
        with self.engine.begin() as c:
            c.execute(
                i.update()
                .where(i.c.id == instance_id, i.c.version == version, i.c.state == InstanceState.PENDING.value)
                .values(message=message, explanation=_dumps(explanation))
            )

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
    ) -> InstanceRecord | None:
        """A worker's report of one instance it runs; ignored (``None``) when the instance is no
        longer placed on that worker (it was rescheduled while the worker was away)."""
        i = t.instances
        values: dict[str, Any] = {"state": state.value, "message": message}
        if port is not None:
            values["port"] = port
        if pid is not None:
            values["pid"] = pid
        if download is not None:
            values["download"] = _dumps(download)
        with self.engine.begin() as c:
            current = c.execute(
                sa.select(i.c.state).where(i.c.id == instance_id, i.c.worker_id == worker_id)
            ).scalar()
            if current is None:
                return None
            if current != state.value:
                values["state_changed_at"] = utcnow()
            c.execute(i.update().where(i.c.id == instance_id, i.c.worker_id == worker_id).values(**values))
        return self.get_instance(instance_id)

    def requeue_workers(self, worker_ids: Sequence[str], reason: str) -> int:
        """Send the instances of these workers back to pending (rescheduling); returns how many."""
        with self.engine.begin() as c:
            return self._requeue(c, worker_ids, reason)

    @staticmethod
    def _requeue(c: sa.Connection, worker_ids: Sequence[str], reason: str) -> int:
        i = t.instances
        if not worker_ids:
            return 0
        # Instances already asked to stop have nowhere to go: delete them instead.
        c.execute(i.delete().where(i.c.worker_id.in_(list(worker_ids)), i.c.desired == "stopped"))
        return c.execute(
            i.update()
            .where(i.c.worker_id.in_(list(worker_ids)))
            .values(
                state=InstanceState.PENDING.value,
                worker_id=None,
                placement=None,
                port=None,
                pid=None,
                message=reason,
                version=i.c.version + 1,
                state_changed_at=utcnow(),
            )
        ).rowcount

    def retry_instance(self, instance_id: str, version: int, reason: str) -> bool:
        """Move an errored instance back to pending for another placement (restart with backoff)."""
        i = t.instances
        with self.engine.begin() as c:
            return (
                c.execute(
                    i.update()
                    .where(i.c.id == instance_id, i.c.version == version, i.c.state == InstanceState.ERROR.value)
                    .values(
                        state=InstanceState.PENDING.value,
                        worker_id=None,
                        placement=None,
                        port=None,
                        pid=None,
                        message=reason,
                        restarts=i.c.restarts + 1,
                        version=version + 1,
                        state_changed_at=utcnow(),
                    )
                ).rowcount
                == 1
            )

    def delete_instance(self, instance_id: str) -> bool:
        """Delete an instance row (after its process stopped, or when it never ran)."""
        with self.engine.begin() as c:
            return c.execute(t.instances.delete().where(t.instances.c.id == instance_id)).rowcount > 0

    def active_placements(self) -> list[InstanceRecord]:
        """Instances that hold resources on a worker (scheduled through running)."""
        return self.list_instances(states=[s.value for s in ACTIVE_STATES])[0]

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
            paths=tuple(_loads(row.paths)),
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
        with self.engine.begin() as c:
            done = c.execute(m.update().where(m.c.worker_id == worker_id, m.c.model == model).values(**values))
            if done.rowcount == 0:
                c.execute(m.insert().values(id=_new_id(), worker_id=worker_id, model=model, **values))

    def list_model_files(
        self, limit: int, offset: int, worker_id: str | None = None
    ) -> tuple[list[ModelFileRecord], int]:
        """A page of model files, by model."""
        where = [] if worker_id is None else [t.model_files.c.worker_id == worker_id]
        return self._page(t.model_files, where, t.model_files.c.model, limit, offset, self._model_file)

    # ------------------------------------------------------------------ usage

    def add_usage(self, row: UsageRow) -> None:
        """Add a request's tokens to the (user, key, model, day) counter (upsert-add, portable)."""
        u = t.usage
        key = (
            u.c.user_id == row.user_id,
            u.c.key_id == (row.key_id or ""),
            u.c.model == row.model,
            u.c.day == row.day,
        )
        add = dict(
            prompt_tokens=u.c.prompt_tokens + row.prompt_tokens,
            completion_tokens=u.c.completion_tokens + row.completion_tokens,
            requests=u.c.requests + row.requests,
        )
        for _ in range(3):
            try:
                with self.engine.begin() as c:
                    if c.execute(u.update().where(*key).values(**add)).rowcount == 0:
                        c.execute(
                            u.insert().values(
                                user_id=row.user_id,
                                key_id=row.key_id or "",
                                model=row.model,
                                day=row.day,
                                prompt_tokens=row.prompt_tokens,
                                completion_tokens=row.completion_tokens,
                                requests=row.requests,
                            )
                        )
                return
            except IntegrityError:  # a concurrent insert won; the update now finds the row
                continue
        raise ConflictError("could not record usage after 3 attempts")

    def query_usage(
        self,
        limit: int,
        offset: int,
        *,
        user_id: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        day_from: dt.date | None = None,
        day_to: dt.date | None = None,
    ) -> tuple[list[UsageRow], int]:
        """A page of usage rows, newest day first, filtered."""
        u = t.usage
        where: list[Any] = []
        if user_id is not None:
            where.append(u.c.user_id == user_id)
        if key_id is not None:
            where.append(u.c.key_id == key_id)
        if model is not None:
            where.append(u.c.model == model)
        if day_from is not None:
            where.append(u.c.day >= day_from)
        if day_to is not None:
            where.append(u.c.day <= day_to)

        def convert(r: sa.Row[Any]) -> UsageRow:
            return UsageRow(
                user_id=r.user_id,
                key_id=r.key_id or None,
                model=r.model,
                day=r.day,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                requests=r.requests,
            )

        return self._page(u, where, (u.c.day.desc(), u.c.model, u.c.user_id, u.c.key_id), limit, offset, convert)

    # ------------------------------------------------------------------ helpers

    def _page(self, table: sa.Table, where: Sequence[Any], order: Any, limit: int, offset: int, convert: Any) -> Any:
        orders = order if isinstance(order, tuple) else (order,)
        with self.engine.connect() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
            rows = c.execute(sa.select(table).where(*where).order_by(*orders).limit(limit).offset(offset)).fetchall()
        return [convert(r) for r in rows], int(total)
