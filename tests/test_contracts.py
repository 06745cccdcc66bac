"""Default behaviour of the interface classes, through plugins registered with a host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

import pytest

from gpustack_core import DetectOptions, Device, PluginHost, hookimpl
from gpustack_core.contracts import Accelerator, Engine, SchedulerPolicy
from gpustack_core.errors import EngineArgumentError, EngineNotInstalledError
from gpustack_core.types import (
    Candidate,
    Deployment,
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
    ModelRef,
    PolicyContext,
    ResourceClaim,
    WorkerInfo,
)


class EchoEngine(Engine):
    """An engine whose versions are a fixed list; launch runs `echo`."""

    name = "echo"
    owned_flags = frozenset({"--port", "--host", "-m", "--model"})

    def __init__(self, versions: Sequence[str]) -> None:
        self._versions = versions

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,), categories=(ModelCategory.LLM,), vendors=("cpu",)
        )

    def default_version(self) -> str:
        return "2.0"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        return [
            EngineInstallation(engine=self.name, version=v, executable=f"{options.engines_dir}/echo-{v}")
            for v in self._versions
        ]

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        args = self.validate_extra_args(request.deployment.extra_args)
        return LaunchSpec(
            argv=(request.installation.executable, "--port", str(request.port), *args),
            env=dict(request.visibility_env),
            port=request.port,
            served_model_name=request.deployment.name,
        )


class MinimalPolicy(SchedulerPolicy):
    name = "minimal"


class OneDevice(Accelerator):
    name = "one"
    vendor = "one"

    def __init__(self) -> None:
        self.present = True

    def detect(self, options: DetectOptions) -> list[Device]:
        if not self.present:
            return []
        return [
            Device(accelerator="one", vendor="one", index=0, uuid="ONE", name="one", memory_total_bytes=1)
        ]

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        return {"ONE_VISIBLE": ",".join(str(d.index) for d in devices)}


def _engine_plugin(engine: Engine) -> SimpleNamespace:
    @hookimpl
    def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
        register(engine)

    return SimpleNamespace(gpustack_register_engines=gpustack_register_engines)


def _policy_plugin(policy: SchedulerPolicy) -> SimpleNamespace:
    @hookimpl
    def gpustack_register_scheduler_policies(register: Callable[[SchedulerPolicy], None]) -> None:
        register(policy)

    return SimpleNamespace(gpustack_register_scheduler_policies=gpustack_register_scheduler_policies)


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions(engines_dir="/opt/engines")


def test_locate_prefers_the_pin_then_the_default_then_the_newest(options: EngineOptions) -> None:
    host = PluginHost(
        entry_points=False, plugins=[("engines", "echo", _engine_plugin(EchoEngine(["1.0", "2.0", "3.0"])))]
    )
    engine = host.engine("echo")
    assert engine.default_version() == "2.0"
    assert engine.capabilities().vendors == ("cpu",)
    assert [i.version for i in engine.installed_versions(options)] == ["1.0", "2.0", "3.0"]
    pinned = engine.locate("1.0", options)
    assert pinned is not None
    assert pinned.version == "1.0"
    assert engine.locate("9.9", options) is None
    default = engine.locate(None, options)
    assert default is not None
    assert default.version == "2.0"
    newest = EchoEngine(["1.0", "3.0"]).locate(None, options)
    assert newest is not None
    assert newest.version == "3.0"
    assert EchoEngine([]).locate(None, options) is None


def test_install_and_remove_default_to_a_clear_refusal(options: EngineOptions) -> None:
    engine = EchoEngine([])
    with pytest.raises(EngineNotInstalledError, match=r"cannot install version '1\.0' itself"):
        engine.install("1.0", options)
    installation = EngineInstallation(engine="echo", version="1.0", executable="/x")
    with pytest.raises(EngineNotInstalledError, match="does not support removing"):
        engine.remove(installation, options)


@pytest.mark.parametrize(
    "args", [("--port", "9"), ("--port=9",), ("-m", "/x.gguf"), ("--ctx", "1", "--host", "0")]
)
def test_validate_extra_args_refuses_owned_flags(args: tuple[str, ...]) -> None:
    with pytest.raises(EngineArgumentError, match=r"sets .* itself"):
        EchoEngine([]).validate_extra_args(args)


def test_validate_extra_args_passes_unknown_flags_and_launch_spec_uses_them(options: EngineOptions) -> None:
    engine = EchoEngine(["2.0"])
    assert engine.validate_extra_args(["--ctx-size", "4096", "--flash-attn"]) == (
        "--ctx-size",
        "4096",
        "--flash-attn",
    )
    installation = engine.locate(None, options)
    assert installation is not None
    deployment = Deployment(
        name="d", model=ModelRef.parse("local:/m.gguf"), engine="echo", extra_args=("--ctx-size", "8")
    )
    from gpustack_core.types import Placement

    request = LaunchRequest(
        deployment=deployment,
        placement=Placement(deployment="d", replica=0, worker="w", claim=ResourceClaim(strategy="cpu_only")),
        installation=installation,
        model_paths=("/m.gguf",),
        visibility_env={"ONE_VISIBLE": "0"},
        port=4321,
    )
    spec = engine.launch_spec(request)
    assert spec.argv == ("/opt/engines/echo-2.0", "--port", "4321", "--ctx-size", "8")
    assert spec.env == {"ONE_VISIBLE": "0"}


def test_policy_defaults_accept_and_have_no_opinion() -> None:
    host = PluginHost(entry_points=False, plugins=[("scheduler", "minimal", _policy_plugin(MinimalPolicy()))])
    (policy,) = host.scheduler_policies()
    worker = WorkerInfo(name="w")
    deployment = Deployment(name="d", model=ModelRef.parse("local:/m.gguf"), engine="echo")
    candidate = Candidate(worker=worker, claim=ResourceClaim(strategy="cpu_only"))
    context = PolicyContext(deployment=deployment, workers=(worker,))
    assert policy.filter(candidate, context) is None
    assert policy.score(candidate, context) is None
    assert policy.weight == 1.0


def test_default_health_redetects_by_uuid() -> None:
    accelerator = OneDevice()
    devices = accelerator.detect(DetectOptions())
    assert accelerator.visibility_env(devices) == {"ONE_VISIBLE": "0"}
    assert [h.healthy for h in accelerator.health(devices, DetectOptions())] == [True]
    accelerator.present = False
    (health,) = accelerator.health(devices, DetectOptions())
    assert not health.healthy
    assert "no longer detected" in health.message
