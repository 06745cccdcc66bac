"""The worker's launch-spec step: engine lookup, devices, and the instance's own work directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from server_fake_engine import FakeEngine

from gpustack_core import PluginHost, hookimpl
from gpustack_core.accelerators.detection import detect_devices
from gpustack_core.contracts import Engine
from gpustack_core.types import Deployment, LaunchRequest, LaunchSpec, ModelRef, Placement, ResourceClaim
from gpustack_core.worker.protocol import Assignment
from gpustack_core.worker.runner import build_launch_spec


def _assignment(model: Path) -> Assignment:
    deployment = Deployment(name="tiny", model=ModelRef.parse(f"local:{model}"), engine="fake")
    placement = Placement(deployment="tiny", replica=0, worker="w", claim=ResourceClaim(strategy="cpu_only"))
    return Assignment(
        instance_id="inst-1",
        deployment_id="dep-1",
        deployment=deployment,
        replica=0,
        desired="running",
        state="scheduled",
        version=1,
        placement=placement.model_dump(mode="json"),
    )


class RecordingEngine(FakeEngine):
    """The fake engine, remembering the last launch request it was given."""

    def __init__(self) -> None:
        self.requests: list[LaunchRequest] = []

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        self.requests.append(request)
        return super().launch_spec(request)


def test_launch_spec_gets_a_created_work_dir(tmp_path: Path, tiny_model: Path) -> None:
    engine = RecordingEngine()

    @hookimpl
    def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
        register(engine)

    host = PluginHost(
        plugins=[
            ("engines", "recording", SimpleNamespace(gpustack_register_engines=gpustack_register_engines))
        ],
        allow=["cpu", "local", "recording"],
    )
    devices = detect_devices(host).devices
    work_dir = tmp_path / "instances" / "inst-1"
    spec = build_launch_spec(
        host,
        _assignment(tiny_model),
        (str(tiny_model),),
        devices,
        tmp_path / "engines",
        41234,
        work_dir=work_dir,
    )
    assert spec.port == 41234
    assert spec.served_model_name == "tiny"
    assert work_dir.is_dir()
    (request,) = engine.requests
    assert request.work_dir == str(work_dir)
    assert request.model_paths == (str(tiny_model),)
    assert request.port == 41234
