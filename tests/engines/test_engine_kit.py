"""The engine plugin kit: the base classes' version handling, ``install_version`` all or nothing,
and the launch helpers on their own (the built-in plugins' golden specs cover them in use)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gpustack_core import engines
from gpustack_core.errors import EngineArgumentError, EngineError, EngineNotInstalledError
from gpustack_core.testing.engine_requests import make_launch_request
from gpustack_core.types import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
    ResourceClaim,
)


class KitEngine(engines.VersionedEngine):
    """A binary engine that "downloads" its program with install_version."""

    name = "kit"
    owned_flags = frozenset({"--port"})
    system_program = "kit-server"

    def __init__(self) -> None:
        self.populated: list[str] = []  # the versions populate() ran for

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,), categories=(ModelCategory.LLM,), vendors=("cpu",)
        )

    def default_version(self) -> str:
        return "2.0"

    def install(self, version: str, options: EngineOptions) -> EngineInstallation:
        def populate(directory: Path, log: Path) -> None:
            self.populated.append(version)
            engines.run_logged(["mkdir", str(directory / "bin")], "making bin", log)
            if version != "broken":
                (directory / "bin" / "kit-server").write_text("#!/bin/sh\n")

        return engines.install_version(
            options, self.name, version, populate, executable="bin/kit-server", what=f"kit {version}"
        )

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        return engines.make_launch_spec(request, [request.installation.executable])


def request(**kwargs: Any) -> LaunchRequest:
    return make_launch_request("kit", executable="/opt/kit/bin/kit-server", version="2.0", **kwargs)


def with_claim(launch: LaunchRequest, claim: ResourceClaim) -> LaunchRequest:
    return launch.model_copy(update={"placement": launch.placement.model_copy(update={"claim": claim})})


def test_system_program_first_then_versions_under_the_engines_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, options = KitEngine(), EngineOptions(engines_dir=str(tmp_path / "engines"))
    assert engine.installed_versions(options) == []
    on_path = tmp_path / "path" / "kit-server"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{on_path.parent}{os.pathsep}{os.environ['PATH']}")
    built = engine.install("2.0", options)
    assert (built.origin, built.executable) == ("installed", str(tmp_path / "engines/kit/2.0/bin/kit-server"))
    listed = engine.installed_versions(options)
    assert [(i.version, i.origin) for i in listed] == [("system", "located"), ("2.0", "installed")]
    assert engine.locate(None, options) == built, "the default version wins over the system one"
    with pytest.raises(EngineError, match="found on the system"):
        engine.remove(listed[0], options)
    engine.remove(built, options)
    assert [i.version for i in engine.installed_versions(options)] == ["system"]


def test_install_version_is_all_or_nothing(tmp_path: Path) -> None:
    engine, options = KitEngine(), EngineOptions(engines_dir=str(tmp_path))
    interrupted = engines.version_dir(options, "kit", "2.0")
    (interrupted / "leftover").mkdir(parents=True)  # no marker: an interrupted install
    first = engine.install("2.0", options)
    assert not (interrupted / "leftover").exists()
    assert engine.install("2.0", options) == first
    assert engine.populated == ["2.0"], "a complete version is returned without installing again"
    log = (tmp_path / "kit" / ".2.0.install.log").read_text()
    assert "$ mkdir " in log
    with pytest.raises(EngineNotInstalledError, match="kit broken does not provide the 'kit-server'"):
        engine.install("broken", options)
    assert not engines.version_dir(options, "kit", "broken").exists()
    assert [i.version for i in engines.list_installations(options, "kit")] == ["2.0"]


def test_a_failed_step_names_itself_and_shows_the_log(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    with pytest.raises(EngineNotInstalledError, match=r"(?s)copying failed \(exit 1\).*No such file"):
        engines.run_logged(["cp", str(tmp_path / "missing"), str(tmp_path / "x")], "copying", log)


def test_a_venv_engine_without_requirements_is_refused(tmp_path: Path) -> None:
    class Incomplete(engines.VenvEngine):
        name = "incomplete"

        def capabilities(self) -> EngineCapabilities:
            raise NotImplementedError

        def default_version(self) -> str:
            return "1"

        def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
            raise NotImplementedError

    with pytest.raises(EngineNotInstalledError, match="must declare `requirements` and `program`"):
        Incomplete().install("1", EngineOptions(engines_dir=str(tmp_path)))


def test_user_args_own_the_context_flags_only_when_the_deployment_sets_it() -> None:
    engine = KitEngine()
    with pytest.raises(EngineArgumentError, match="sets -c itself"):
        engines.user_args(engine, request(extra_args=("-c", "9")), {"-c"})
    free = request(extra_args=("-c", "9", "--seed", "-1"), context_length=None)
    assert engines.user_args(engine, free, {"-c"}) == ("-c", "9", "--seed", "-1")
    with pytest.raises(EngineArgumentError, match="sets --port itself"):
        engines.user_args(engine, request(extra_args=("--port=1",)))


def test_check_served_says_what_the_engine_serves() -> None:
    engine = KitEngine()
    engines.check_served(engine, request())
    with pytest.raises(EngineArgumentError, match="does not serve 'rerank' models; use one of: llm"):
        engines.check_served(engine, request(category=ModelCategory.RERANK))
    with pytest.raises(EngineArgumentError, match=r"runs on one worker \(it has no RPC\)"):
        engines.check_served(engine, request(node_count=2), "it has no RPC")


def test_model_path_and_directory() -> None:
    engine = KitEngine()
    with pytest.raises(EngineArgumentError, match="engine 'kit' needs the local path of the GGUF file"):
        engines.model_path(engine, request(model_paths=()), "the GGUF file")
    shard = request(model_paths=("/m/qwen-0.5B/model-00001.safetensors", "/m/qwen-0.5B/config.json"))
    assert engines.model_directory(engine, shard) == "/m/qwen-0.5B"
    directory = request(model_paths=("/m/qwen-0.5B",))
    assert engines.model_directory(engine, directory) == "/m/qwen-0.5B"
    assert engines.model_directory(engine, request(model_paths=("/m/w/model.bin",)), None) == "/m/w"


def test_gpu_layers_and_tensor_split_follow_the_claim() -> None:
    assert engines.gpu_layers(request(vendor="cpu")) == 0
    assert engines.gpu_layers(request(vendor="cpu", rpc_servers=("10.0.0.2:50052",))) == 999
    assert engines.gpu_layers(request(vendor="nvidia")) == 999
    partial = request(vendor="nvidia")
    claim = ResourceClaim(
        strategy="partial_offload", offloaded_layers=12, devices=partial.placement.claim.devices
    )
    partial = partial.model_copy(update={"placement": partial.placement.model_copy(update={"claim": claim})})
    assert engines.gpu_layers(partial) == 12
    assert engines.tensor_split(request(vendor="nvidia")) is None
    assert engines.tensor_split(request(vendor="nvidia", device_count=2)) == f"{10 * 2**30},{10 * 2**30}"
    unclaimed = request(vendor="nvidia", device_count=3)
    unclaimed = unclaimed.model_copy(
        update={
            "placement": unclaimed.placement.model_copy(
                update={"claim": ResourceClaim(strategy="multi_device")}
            )
        }
    )
    assert engines.tensor_split(unclaimed) == "1,1,1"


def test_make_launch_spec_fills_in_the_common_fields() -> None:
    spec = engines.make_launch_spec(request(vendor="nvidia"), ["/bin/kit"], extra_env={"A": "1"})
    assert (spec.argv, spec.port, spec.probe_host, spec.served_model_name) == (
        ("/bin/kit",),
        40100,
        "127.0.0.1",
        "qwen-chat",
    )
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "0", "A": "1", "GPUSTACK_TEST_USER_ENV": "1"}
    assert (spec.readiness.path, spec.health.path, spec.health.timeout_s) == ("/health", "/health", 5.0)
    rpc = engines.make_launch_spec(
        request(), ["/bin/kit-rpc"], health_path=None, readiness_mode="tcp", served_name="x", cwd="/w"
    )
    assert rpc.readiness == rpc.health == LaunchSpec.model_fields["health"].default
    assert (rpc.readiness_mode, rpc.served_model_name, rpc.cwd) == ("tcp", "x", "/w")
    assert rpc.ready_timeout_s == LaunchSpec.model_fields["ready_timeout_s"].default
