"""Controllers, one pass at a time on a real store: replicas, restart backoff, lost workers,
scheduling with explanations, deletion; and the worker's download progress aggregation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from server_fake_engine import make_host
from server_helpers import fast_config

from gpustack_core.server.controllers import Controllers
from gpustack_core.server.services import Services
from gpustack_core.server.store import Store, migrate, schema
from gpustack_core.server.store.database import make_engine
from gpustack_core.server.store.records import InstanceState
from gpustack_core.types import Deployment, DownloadProgress, ModelRef, WorkerInfo
from gpustack_core.worker.runner import DownloadTracker


@pytest.fixture
def controllers(tmp_path: Path, tiny_model: Path) -> Iterator[Controllers]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate.upgrade(engine)
    services = Services(
        config=fast_config(tmp_path, heartbeat_timeout_s=0.0), store=Store(engine), host=make_host()
    )
    ctl = Controllers(services)
    yield ctl
    engine.dispose()


def _deploy(ctl: Controllers, model: Path, replicas: int = 1, **extra: object) -> str:
    spec = Deployment(
        name="d", model=ModelRef(source="local", id=str(model)), engine="fake", replicas=replicas, **extra
    )
    return ctl.services.store.create_deployment(spec).id


def _worker(ctl: Controllers, name: str) -> str:
    info = WorkerInfo(name=name, cpu_count=8, memory_total_bytes=64 * 2**30, engines=("fake",))
    return ctl.services.store.register_worker(info).id


def test_pass_creates_replicas_and_places_them(controllers: Controllers, tiny_model: Path) -> None:
    worker = _worker(controllers, "w1")
    dep = _deploy(controllers, tiny_model, replicas=2)
    controllers.reconcile_deployments()
    controllers.schedule_pending()
    instances, _ = controllers.services.store.list_instances(deployment_id=dep)
    assert [(i.replica, i.state, i.worker_id) for i in instances] == [
        (0, InstanceState.SCHEDULED, worker),
        (1, InstanceState.SCHEDULED, worker),
    ]
    assert instances[0].placement is not None
    assert instances[0].placement["worker"] == "w1"


def test_unplaceable_instance_keeps_the_explanation(controllers: Controllers, tiny_model: Path) -> None:
    _worker(controllers, "w1")
    _deploy(controllers, tiny_model, engine_version=None, gpus_per_replica=4)
    controllers.reconcile_deployments()
    controllers.schedule_pending()
    inst = controllers.services.store.list_instances()[0][0]
    assert inst.state == InstanceState.PENDING
    assert inst.message.startswith("unschedulable")
    assert inst.explanation is not None
    assert "w1" in str(inst.explanation)


def test_errored_instance_is_retried_after_a_doubling_backoff(
    controllers: Controllers, tiny_model: Path
) -> None:
    # a backoff no slow machine can outlast between two lines of this test
    controllers.services.config = dataclasses.replace(controllers.services.config, restart_backoff_s=30.0)
    store = controllers.services.store
    worker = _worker(controllers, "w1")
    _deploy(controllers, tiny_model)
    controllers.reconcile_deployments()
    controllers.schedule_pending()
    inst = store.list_instances()[0][0]
    store.report(inst.id, worker, InstanceState.ERROR, message="boom")
    controllers.retry_errors()
    assert store.get_instance(inst.id).state == InstanceState.ERROR  # type: ignore[union-attr]
    with store.engine.begin() as c:  # the backoff (30 s * 2**0) has passed
        c.execute(
            sa.update(schema.instances)
            .values(state_changed_at=dt.datetime(2000, 1, 1))
            .where(schema.instances.c.id == inst.id)
        )
    controllers.retry_errors()
    retried = store.get_instance(inst.id)
    assert retried is not None
    assert retried.state == InstanceState.PENDING
    assert retried.restarts == 1
    assert "boom" in retried.message


def test_silent_worker_is_marked_unreachable_and_its_instances_move(
    controllers: Controllers, tiny_model: Path
) -> None:
    store = controllers.services.store
    lost = _worker(controllers, "lost")
    _deploy(controllers, tiny_model)
    controllers.reconcile_deployments()
    controllers.schedule_pending()
    assert store.list_instances()[0][0].worker_id == lost
    time.sleep(2.1)  # silent for more than the 1 s timeout (heartbeats are stored in whole seconds)
    survivor = _worker(controllers, "survivor")
    controllers.check_workers()
    assert store.get_worker(lost).state == "unreachable"  # type: ignore[union-attr]
    inst = store.list_instances()[0][0]
    assert inst.state == InstanceState.PENDING
    assert "lost stopped sending heartbeats" in inst.message
    controllers.schedule_pending()
    assert store.list_instances()[0][0].worker_id == survivor


def test_deleting_a_deployment_removes_unplaced_instances_and_the_row(
    controllers: Controllers, tiny_model: Path
) -> None:
    store = controllers.services.store
    dep = _deploy(controllers, tiny_model, replicas=3)
    controllers.reconcile_deployments()
    assert store.list_instances()[1] == 3
    store.mark_deployment_deleting(dep)
    controllers.reconcile_deployments()
    assert store.list_instances()[1] == 0
    assert store.get_deployment(dep) is None


def test_download_tracker_sums_files() -> None:
    tracker = DownloadTracker()
    callback = tracker.callback("i1")
    callback(DownloadProgress(file="a", downloaded_bytes=10, total_bytes=100))
    callback(DownloadProgress(file="b", downloaded_bytes=5, total_bytes=50))
    callback(DownloadProgress(file="a", downloaded_bytes=60, total_bytes=100))
    assert tracker.take("i1") == {
        "file": "a",
        "downloaded_bytes": 65,
        "total_bytes": 150,
        "percent": 43.3,
        "bytes_per_second": None,
        "eta_seconds": None,
    }
    assert tracker.take("i1") is None
    # rates of the files still downloading add up; the ETA follows from what is left
    callback(DownloadProgress(file="a", downloaded_bytes=80, total_bytes=100, bytes_per_second=10.0))
    callback(DownloadProgress(file="b", downloaded_bytes=50, total_bytes=50, bytes_per_second=8.0, done=True))
    latest = tracker.take("i1")
    assert latest is not None
    assert (latest["downloaded_bytes"], latest["percent"]) == (130, 86.7)
    assert (latest["bytes_per_second"], latest["eta_seconds"]) == (10.0, 2.0)
