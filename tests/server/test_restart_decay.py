"""An instance's restart count (and so the server's retry backoff) decays after a stable run."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from gpustack_core.server.store import Store, schema
from gpustack_core.server.store.records import InstanceState
from gpustack_core.types import Deployment, ModelRef, WorkerInfo


def test_restarts_are_forgotten_once_an_instance_has_run_long_enough(store: Store) -> None:
    spec = Deployment(name="d", model=ModelRef(source="local", id="/m.gguf"), engine="fake", replicas=2)
    dep_id = store.create_deployment(spec).id
    store.ensure_replicas(dep_id, 2)
    worker = store.register_worker(WorkerInfo(name="w")).id
    old, fresh = store.list_instances(deployment_id=dep_id)[0]
    for inst in (old, fresh):
        assert store.place(inst.id, inst.version, worker, {"worker": "w"})
        assert store.report(inst.id, worker, InstanceState.RUNNING) is not None
    long_ago = dt.datetime(2026, 1, 1)
    with store.engine.begin() as c:
        c.execute(sa.update(schema.instances).values(restarts=7))
        c.execute(
            sa.update(schema.instances)
            .where(schema.instances.c.id == old.id)
            .values(state_changed_at=long_ago)
        )
    assert store.forget_old_restarts(long_ago + dt.timedelta(seconds=1)) == 1
    assert store.get_instance(old.id).restarts == 0  # type: ignore[union-attr]
    assert store.get_instance(fresh.id).restarts == 7  # type: ignore[union-attr]
