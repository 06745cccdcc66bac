"""The store on every configured database: migrations match the schema, placement is a
compare-and-set (never twice), replicas are unique, usage is upsert-added."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gpustack_core.server.store import Store, migrate, schema
from gpustack_core.server.store.records import UsageRow
from gpustack_core.types import Deployment, ModelRef, WorkerInfo


def _deployment(store: Store, replicas: int = 1) -> str:
    spec = Deployment(
        name="d", model=ModelRef(source="local", id="/m.gguf"), engine="fake", replicas=replicas
    )
    return store.create_deployment(spec).id


def test_migrations_create_exactly_the_schema(store: Store) -> None:
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), schema.metadata)
    assert diff == []
    migrate.upgrade(store.engine)  # a second run is a no-op


def test_an_instance_is_placed_once_even_when_two_controllers_race(store: Store) -> None:
    dep_id = _deployment(store)
    assert store.ensure_replicas(dep_id, 1) == (1, 0)
    assert store.ensure_replicas(dep_id, 1) == (0, 0)
    worker_a = store.register_worker(WorkerInfo(name="a")).id
    worker_b = store.register_worker(WorkerInfo(name="b")).id
    inst = store.list_instances(deployment_id=dep_id)[0][0]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def place(worker: str) -> None:
        barrier.wait()
        results[worker] = store.place(inst.id, inst.version, worker, {"worker": worker})

    threads = [threading.Thread(target=place, args=(w,)) for w in (worker_a, worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]
    placed = store.get_instance(inst.id)
    assert placed is not None
    winner = next(w for w, ok in results.items() if ok)
    assert placed.worker_id == winner
    assert placed.version == inst.version + 1
    assert not store.place(inst.id, inst.version, worker_a, {})  # a stale retry changes nothing


def test_duplicate_replica_rows_are_rejected_by_the_database(store: Store) -> None:
    dep_id = _deployment(store)
    store.ensure_replicas(dep_id, 1)
    row = dict(
        id="dup",
        deployment_id=dep_id,
        replica=0,
        state="pending",
        desired="running",
        message="",
        restarts=0,
        version=0,
        state_changed_at=dt.datetime(2026, 1, 1),
        created_at=dt.datetime(2026, 1, 1),
    )
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as c:
        c.execute(schema.instances.insert().values(**row))


def test_requeue_of_a_lost_worker_returns_its_instances_to_pending(store: Store) -> None:
    dep_id = _deployment(store, replicas=2)
    store.ensure_replicas(dep_id, 2)
    worker = store.register_worker(WorkerInfo(name="gone")).id
    for inst in store.list_instances(deployment_id=dep_id)[0]:
        assert store.place(inst.id, inst.version, worker, {"worker": "gone"})
    assert store.requeue_workers([worker], "lost") == 2
    instances = store.list_instances(deployment_id=dep_id)[0]
    assert {(i.state.value, i.worker_id, i.message) for i in instances} == {("pending", None, "lost")}


def test_usage_is_upsert_added_and_filtered(store: Store) -> None:
    day = dt.date(2026, 11, 20)
    for _ in range(3):
        store.add_usage(
            UsageRow(
                user_id="u1",
                key_id="k1",
                model="m",
                day=day,
                prompt_tokens=10,
                completion_tokens=5,
                requests=1,
            )
        )
    store.add_usage(
        UsageRow(
            user_id="u1", key_id=None, model="m", day=day, prompt_tokens=1, completion_tokens=1, requests=1
        )
    )
    store.add_usage(
        UsageRow(
            user_id="u2",
            key_id="k2",
            model="m",
            day=day - dt.timedelta(days=3),
            prompt_tokens=7,
            completion_tokens=0,
            requests=1,
        )
    )
    rows, total = store.query_usage(100, 0, user_id="u1", key_id="k1")
    assert total == 1
    assert (rows[0].prompt_tokens, rows[0].completion_tokens, rows[0].requests) == (30, 15, 3)
    rows, total = store.query_usage(100, 0, day_from=day - dt.timedelta(days=1))
    assert total == 2
    assert {r.key_id for r in rows} == {"k1", None}


def test_concurrent_upserts_neither_deadlock_nor_lose_writes(store: Store) -> None:
    """Update-then-insert from many threads at once: on InnoDB two inserts of new neighbouring keys
    deadlock on each other's gap locks; every write must still land exactly once."""
    worker = store.register_worker(WorkerInfo(name="w")).id
    day = dt.date(2026, 11, 21)
    threads_n, rounds = 8, 12
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                store.add_usage(
                    UsageRow(
                        user_id="u",
                        key_id=f"k{n % 4}",
                        model=f"m{i % 3}",
                        day=day,
                        prompt_tokens=2,
                        completion_tokens=3,
                        requests=1,
                    )
                )
                # the same values twice in one second: the update matches a row it does not change
                store.put_model_file(worker, f"model-{n}-{i % 2}", "ready", 10, 10, ["/p"])
                store.register_worker(WorkerInfo(name=f"w{n}-{i % 2}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows, total = store.query_usage(1000, 0, user_id="u")
    assert total == 4 * 3  # (key, model) pairs
    assert sum(r.requests for r in rows) == threads_n * rounds
    assert sum(r.prompt_tokens for r in rows) == 2 * threads_n * rounds
    assert sum(r.completion_tokens for r in rows) == 3 * threads_n * rounds
    files, count = store.list_model_files(1000, 0, worker_id=worker)
    assert count == threads_n * 2
    assert {f.state for f in files} == {"ready"}
    assert store.list_workers(limit=1000)[1] == 1 + threads_n * 2


def test_instance_progress_migration_down_and_up(store: Store) -> None:
    """Revision 0003_first_deploy adds ``instances.progress``; its downgrade drops it, again upgradable."""
    from alembic import command
    from alembic.script import ScriptDirectory

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(store.engine).get_columns("instances")}

    assert "progress" in columns()
    before = ScriptDirectory.from_config(migrate._config()).get_revision("0003_first_deploy").down_revision
    assert isinstance(before, str)
    with store.engine.begin() as connection:
        command.downgrade(migrate._config(connection), before)
    assert "progress" not in columns()
    migrate.upgrade(store.engine)
    assert "progress" in columns()
    assert migrate.current_revision(store.engine) == migrate.head_revision()
