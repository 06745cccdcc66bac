"""The instance state timeline in the store, on every configured database: one event per state
change (and per new pending reason), in order, bounded per instance, deleted with the instance;
the 0008 migration up and down."""

from __future__ import annotations

import itertools

import sqlalchemy as sa

from gpustack_core.server.store import Store, migrate
from gpustack_core.server.store.instance_events import MAX_EVENTS_PER_INSTANCE, record_events
from gpustack_core.server.store.records import InstanceState
from gpustack_core.types import Deployment, ModelRef, WorkerInfo


def _instance(store: Store, name: str = "d") -> str:
    spec = Deployment(name=name, model=ModelRef(source="local", id="/m.gguf"), engine="fake", replicas=1)
    dep_id = store.create_deployment(spec).id
    store.ensure_replicas(dep_id, 1)
    return store.list_instances(deployment_id=dep_id)[0][0].id


def _timeline(store: Store, instance_id: str) -> list[tuple[str, str]]:
    return [(e.state.value, e.message) for e in store.list_instance_events(instance_id)]


def test_every_state_change_is_recorded_once_in_order(store: Store) -> None:
    iid = _instance(store)
    inst = store.get_instance(iid)
    assert inst is not None
    store.explain_pending(iid, inst.version, "unschedulable: no ready workers", {"summary": "x"})
    store.explain_pending(iid, inst.version, "unschedulable: no ready workers", {"summary": "x"})  # same
    worker = store.register_worker(WorkerInfo(name="w1")).id
    assert store.place(iid, inst.version, worker, {"worker": "w1"})
    assert not store.place(iid, inst.version, worker, {"worker": "w1"})  # stale: no event
    store.report(iid, worker, InstanceState.STARTING, message="loading")
    store.report(iid, worker, InstanceState.STARTING, message="still loading")  # same state: no event
    store.report(iid, worker, InstanceState.RUNNING)
    store.report(iid, "another-worker", InstanceState.ERROR, message="ignored")  # not its worker
    store.report(iid, worker, InstanceState.ERROR, message="engine exited with code 1")
    errored = store.get_instance(iid)
    assert errored is not None
    assert store.retry_instance(iid, errored.version, "retrying after error (restart 1)")
    assert _timeline(store, iid) == [
        ("pending", "waiting to be scheduled"),
        ("pending", "unschedulable: no ready workers"),
        ("scheduled", "placed on w1"),
        ("starting", "loading"),
        ("running", ""),
        ("error", "engine exited with code 1"),
        ("pending", "retrying after error (restart 1)"),
    ]
    events = store.list_instance_events(iid)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    assert events[-1].model_dump(mode="json")["at"].endswith("Z")  # the API says UTC
    assert store.list_instance_events(iid, limit=2) == events[-2:]


def test_a_requeue_records_the_reason_for_each_instance(store: Store) -> None:
    ids = [_instance(store, "a"), _instance(store, "b")]
    worker = store.register_worker(WorkerInfo(name="gone")).id
    for iid in ids:
        inst = store.get_instance(iid)
        assert inst is not None
        assert store.place(iid, inst.version, worker, {"worker": "gone"})
    assert store.requeue_workers([worker], "worker gone stopped sending heartbeats") == 2
    for iid in ids:
        assert _timeline(store, iid)[-1] == ("pending", "worker gone stopped sending heartbeats")
    assert store.requeue_workers([worker], "again") == 0  # nothing left on it: no events
    assert all(_timeline(store, iid)[-1][1] != "again" for iid in ids)


def test_the_timeline_is_bounded_and_goes_with_the_instance(store: Store) -> None:
    iid, other = _instance(store, "a"), _instance(store, "b")
    extra = 7
    with store.engine.begin() as c:
        record_events(c, [(iid, "running", str(n)) for n in range(MAX_EVENTS_PER_INSTANCE + extra)])
    kept = _timeline(store, iid)
    assert len(kept) == MAX_EVENTS_PER_INSTANCE
    assert kept[0] == ("running", str(extra))  # the oldest ones (and the creation event) were dropped
    assert kept[-1] == ("running", str(MAX_EVENTS_PER_INSTANCE + extra - 1))
    with store.engine.begin() as c:  # one more drops exactly one
        record_events(c, [(iid, "stopped", "last")])
    kept = _timeline(store, iid)
    assert len(kept) == MAX_EVENTS_PER_INSTANCE
    assert kept[0] == ("running", str(extra + 1))
    assert _timeline(store, other) == [("pending", "waiting to be scheduled")]  # others untouched

    assert store.delete_instance(iid)
    assert store.list_instance_events(iid) == []
    with store.engine.connect() as c:
        left = c.execute(sa.text("SELECT DISTINCT instance_id FROM instance_events")).scalars().all()
    assert left == [other]


def test_the_instance_events_migration_goes_down_and_up(store: Store) -> None:
    def tables() -> set[str]:
        return set(sa.inspect(store.engine).get_table_names())

    iid = _instance(store)
    assert "instance_events" in tables()
    migrate.downgrade(store.engine, "0004_instance_groups")
    assert "instance_events" not in tables()
    assert migrate.current_revision(store.engine) == "0004_instance_groups"
    assert store.get_instance(iid) is not None  # instances are kept
    migrate.upgrade(store.engine)
    assert "instance_events" in tables()
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert store.list_instance_events(iid) == []  # history starts with the upgrade
    worker = store.register_worker(WorkerInfo(name="w")).id
    inst = store.get_instance(iid)
    assert inst is not None
    assert store.place(iid, inst.version, worker, {})
    assert _timeline(store, iid) == [("scheduled", "placed on w")]


def test_a_group_failing_on_a_subordinate_rank_and_losing_a_worker_is_recorded(store: Store) -> None:
    spec = Deployment(name="g", model=ModelRef(source="local", id="/m.gguf"), engine="fake", replicas=1)
    dep_id = store.create_deployment(spec).id
    store.ensure_replicas(dep_id, 1)
    head = store.register_worker(WorkerInfo(name="head")).id
    sub = store.register_worker(WorkerInfo(name="sub")).id
    inst = store.list_instances(deployment_id=dep_id)[0][0]
    placement = {"worker": "head", "subordinate_workers": ["sub"], "deployment": "g", "replica": 0}
    assert store.place(inst.id, inst.version, head, placement)
    store.report(inst.id, head, InstanceState.RUNNING, port=40000)
    assert store.report_part(inst.id, 1, sub, InstanceState.ERROR, message="exited with code 1")
    assert store.report_part(inst.id, 1, sub, InstanceState.ERROR, message="again")  # already in error
    errored = store.get_instance(inst.id)
    assert errored is not None
    assert store.retry_instance(inst.id, errored.version, "retrying")
    placed = store.get_instance(inst.id)
    assert placed is not None
    assert store.place(inst.id, placed.version, head, placement)
    assert store.requeue_workers([sub], "worker sub stopped sending heartbeats") == 1
    assert _timeline(store, inst.id) == [
        ("pending", "waiting to be scheduled"),
        ("scheduled", "placed on head"),
        ("running", ""),
        ("error", "rank 1 on worker sub failed: exited with code 1"),
        ("pending", "retrying"),
        ("scheduled", "placed on head"),
        ("pending", "worker sub stopped sending heartbeats"),
    ]
