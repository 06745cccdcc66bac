"""LaunchSpecSuite: a small engine passes it, and each kind of broken engine or setup fails it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from gpustack_core.contracts import Engine
from gpustack_core.engines import check_served, launch_env, refuse_owned_flags
from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelFormat,
)

TOY_FLAGS = frozenset({"--port", "--host", "--model"})
GOLDEN = Path(__file__).parent / "golden_toy"


class ToyEngine(Engine):
    """``toy serve --model M --host H --port P <extra>``; owns --port, --host and --model."""

    name = "toy"
    owned_flags = frozenset({"--port", "--host", "--model"})
    #: the flags launch_spec refuses (all owned ones, unless a broken plugin forgets one)
    refused: ClassVar[frozenset[str]] = owned_flags
    #: flags to emit beyond the recorded ones (a broken plugin)
    stray: ClassVar[tuple[str, ...]] = ()

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            formats=(ModelFormat.GGUF,), categories=(ModelCategory.LLM,), vendors=("cpu", "nvidia")
        )

    def default_version(self) -> str:
        return "1.0"

    def installed_versions(self, options: EngineOptions) -> list[EngineInstallation]:
        return []

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        deployment = request.deployment
        check_served(self, request)  # categories, and performance presets it does not claim
        extra = refuse_owned_flags(self.name, deployment.extra_args, self.refused)
        argv = (
            request.installation.executable,
            "serve",
            "--model",
            request.model_paths[0],
            "--host",
            request.host,
            "--port",
            str(request.port),
            *self.stray,
            *extra,
        )
        return LaunchSpec(
            argv=argv, env=launch_env(request), port=request.port, served_model_name="qwen-chat"
        )


class LeakyEngine(ToyEngine):
    """Declares --host as owned but forgets to refuse it."""

    refused = frozenset({"--port", "--model"})


class StrayFlagEngine(ToyEngine):
    """Emits a flag the recorded CLI does not have."""

    stray = ("--made-up",)


class TestToyLaunch(LaunchSpecSuite):
    engine = ToyEngine()
    executable = "/opt/engines/toy/1.0/bin/toy"
    golden_dir = GOLDEN
    extra_scenarios = {"cpu-extra": {"vendor": "cpu", "extra_args": ("--threads", "2")}}

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        assert command[1] == "serve"
        return command[2:], TOY_FLAGS | {"--threads"}

    def test_scenarios_are_the_standard_ones_and_the_extra_ones(self) -> None:
        assert sorted(self.scenarios()) == ["cpu", "cpu-extra", "nvidia-multi-device", "nvidia-single"]

    def test_request_defaults_are_overridden_by_arguments(self) -> None:
        assert self.request().deployment.category == ModelCategory.LLM
        assert self.request().installation.version == "1.0"
        assert self.request(port=1234).port == 1234


def test_a_flag_outside_the_recorded_cli_fails() -> None:
    class Stray(TestToyLaunch):
        engine = StrayFlagEngine()

    with pytest.raises(AssertionError, match="--made-up"):
        Stray().test_emitted_flags_exist_in_the_recorded_cli("cpu")


def test_an_owned_flag_that_is_not_refused_fails() -> None:
    class Leaky(TestToyLaunch):
        engine = LeakyEngine()

    Leaky().test_owned_flags_are_refused_in_both_forms("--port")
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        Leaky().test_owned_flags_are_refused_in_both_forms("--host")


def test_a_spec_that_differs_from_its_golden_file_fails(tmp_path: Path) -> None:
    class Moved(TestToyLaunch):
        golden_dir = tmp_path

    with pytest.raises(AssertionError, match="no golden file"):
        Moved().test_launch_spec_matches_golden("cpu")
    (tmp_path / "cpu.json").write_text((GOLDEN / "cpu.json").read_text().replace("40100", "40101"))
    with pytest.raises(AssertionError, match=r"differs from cpu\.json"):
        Moved().test_launch_spec_matches_golden("cpu")


def test_a_suite_without_flags_of_fails_loudly() -> None:
    class NoHook(LaunchSpecSuite):
        engine = ToyEngine()
        executable = "/opt/engines/toy/1.0/bin/toy"

    with pytest.raises(NotImplementedError, match="flags_of"):
        NoHook().test_emitted_flags_exist_in_the_recorded_cli("cpu")
