"""The launch-spec suite: the checks every engine plugin runs on its ``launch_spec`` without the engine.

A plugin author adopts it with a short test module::

    from gpustack_core.testing import LaunchSpecSuite
    from my_engine import MyEngine
    from my_engine._cli import MY_ENGINE_FLAGS

    class TestMyEngineLaunch(LaunchSpecSuite):
        engine = MyEngine()
        executable = "/opt/engines/my-engine/1.0/bin/my-engine"
        extra_scenarios = {"nvidia-embedding": {"vendor": "nvidia", "category": ModelCategory.EMBEDDING}}

        def flags_of(self, command):
            assert command[1] == "serve"
            return command[2:], MY_ENGINE_FLAGS

The suite builds requests with :func:`~gpustack_core.testing.engine_requests.make_launch_request`
and checks, for the subclass's engine:

* every scenario's launch spec equals its golden file ``<golden_dir>/<scenario>.json``
  (``GPUSTACK_UPDATE_GOLDEN=1`` writes them; review the diff);
* every flag each emitted command uses is in the recorded CLI set that :meth:`~LaunchSpecSuite.flags_of`
  returns for that command (``sh -c "A && exec B"`` is split with
  :func:`~gpustack_core.engines.commands_of`);
* every flag in ``engine.owned_flags`` is refused in both ``--f v`` and ``--f=v`` forms;
* an unknown flag is passed through;
* the accelerator's visibility variable and the deployment's env reach the process;
* a model category the engine does not serve is refused;
* every performance preset of :data:`~gpustack_core.testing.engine_requests.PRESET_SCENARIOS` that
  the engine's capabilities claim has a golden file ``preset-<name>.json`` and emits only recorded
  flags; every other one is refused with an error naming it.

Tests of the subclass can use ``self.request(...)`` and ``self.spec(...)``, and take the argument
``launch_scenario`` (parametrized over every scenario name) or ``owned_flag`` (over every owned flag).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gpustack_core.contracts import Engine
from gpustack_core.engines.flags import commands_of, unknown_flags
from gpustack_core.errors import EngineArgumentError
from gpustack_core.types import LaunchRequest, LaunchSpec, ModelCategory, preset_refusal

from .engine_requests import PRESET_SCENARIOS, assert_matches_golden, make_launch_request, standard_scenarios

__all__ = ["LaunchSpecSuite"]


class LaunchSpecSuite:
    """Base class of the launch-spec suite; subclass it in a test module named ``test_*.py``.

    Required class attributes: ``engine`` and ``executable``; required method: :meth:`flags_of`.
    """

    #: the engine under test (an instance; its ``owned_flags`` parametrize the refusal test)
    engine: ClassVar[Engine]
    #: the installation's executable path written into every request (and so into the golden files)
    executable: ClassVar[str]
    #: the installation's version (default: ``engine.default_version()``)
    version: ClassVar[str | None] = None
    #: where the golden files live (default: ``golden/`` next to the subclass's test module)
    golden_dir: ClassVar[Path | None] = None
    #: whether the standard scenarios include multi-node head and worker (default: ``multi_worker``)
    multi_node: ClassVar[bool | None] = None
    #: scenarios added to the standard ones: name -> keyword arguments of ``make_launch_request``
    extra_scenarios: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: keyword arguments of ``make_launch_request`` every request starts from (e.g. ``model_paths``);
    #: ``category`` defaults to the engine's first category
    request_defaults: ClassVar[Mapping[str, Any]] = {}
    #: the extra arguments of the pass-through test: a flag the engine does not know, and its value
    unknown_args: ClassVar[tuple[str, ...]] = ("--some-new-flag", "7")
    #: presets the capabilities claim but this ``version`` refuses: scenario name of
    #: ``PRESET_SCENARIOS`` -> a regular expression of the refusal (e.g. "pin engine_version")
    version_refused_presets: ClassVar[Mapping[str, str]] = {}
    #: the message (a regular expression, ``{flag}`` is the escaped flag) an owned flag is refused with
    owned_flag_message: ClassVar[str] = "sets {flag} itself"

    # ------------------------------------------------------------------ hooks to provide

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """The words of one emitted ``command`` that hold the engine's flags, and the recorded flag set
        of that program's CLI to check them against. Assert on the words before them (subcommand,
        ``-m module``) here. Required."""
        raise NotImplementedError("the suite subclass must define flags_of(command)")

    def assert_passed_through(self, spec: LaunchSpec, args: tuple[str, ...]) -> None:
        """Check that the unknown extra ``args`` reached the process (default: the flag is in argv)."""
        assert args[0] in " ".join(spec.argv), spec.argv

    # ------------------------------------------------------------------ helpers for tests

    @classmethod
    def scenarios(cls) -> dict[str, dict[str, Any]]:
        """Scenario name -> keyword arguments of ``make_launch_request``: the standard scenarios for
        the engine's vendors, then ``extra_scenarios``."""
        caps = cls.engine.capabilities()
        multi_node = caps.multi_worker if cls.multi_node is None else cls.multi_node
        scenarios = standard_scenarios(caps.vendors, multi_node=multi_node)
        scenarios.update({name: dict(kwargs) for name, kwargs in cls.extra_scenarios.items()})
        return scenarios

    def golden_path(self, scenario: str) -> Path:
        """The golden file of ``scenario``."""
        directory = self.golden_dir or Path(inspect.getfile(type(self))).parent / "golden"
        return directory / f"{scenario}.json"

    def request(self, **kwargs: Any) -> LaunchRequest:
        """A launch request for the engine: ``request_defaults`` overridden by ``kwargs``."""
        merged: dict[str, Any] = {"category": self.engine.capabilities().categories[0]}
        merged.update(self.request_defaults)
        merged.update(kwargs)
        version = self.version or self.engine.default_version()
        return make_launch_request(self.engine.name, executable=self.executable, version=version, **merged)

    def spec(self, **kwargs: Any) -> LaunchSpec:
        """The engine's launch spec for ``self.request(**kwargs)``."""
        return self.engine.launch_spec(self.request(**kwargs))

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``launch_scenario`` over the scenarios and ``owned_flag`` over the owned flags."""
        if "launch_scenario" in metafunc.fixturenames:
            metafunc.parametrize("launch_scenario", sorted(self.scenarios()))
        if "preset_scenario" in metafunc.fixturenames:
            metafunc.parametrize("preset_scenario", sorted(PRESET_SCENARIOS))
        if "owned_flag" in metafunc.fixturenames:
            metafunc.parametrize("owned_flag", sorted(self.engine.owned_flags))

    # ------------------------------------------------------------------ the tests

    def test_launch_spec_matches_golden(self, launch_scenario: str) -> None:
        """The launch spec of each scenario equals its golden file."""
        spec = self.spec(**self.scenarios()[launch_scenario])
        assert_matches_golden(spec, self.golden_path(launch_scenario))

    def test_emitted_flags_exist_in_the_recorded_cli(self, launch_scenario: str) -> None:
        """Every flag of every emitted command is in that program's recorded CLI."""
        spec = self.spec(**self.scenarios()[launch_scenario])
        for command in commands_of(spec.argv):
            words, known = self.flags_of(command)
            assert unknown_flags(words, known) == [], command

    def test_owned_flags_are_refused_in_both_forms(self, owned_flag: str) -> None:
        """A flag the engine sets itself is refused as ``--f v`` and as ``--f=v``."""
        message = self.owned_flag_message.format(flag=re.escape(owned_flag))
        for args in ((owned_flag, "1"), (f"{owned_flag}=1",)):
            with pytest.raises(EngineArgumentError, match=message):
                self.spec(extra_args=args)

    def test_unknown_flags_pass_through(self) -> None:
        """A flag the plugin does not know reaches the process."""
        self.assert_passed_through(self.spec(extra_args=self.unknown_args), self.unknown_args)

    def test_visibility_and_user_env_reach_the_process(self) -> None:
        """The accelerator's visibility variable and the deployment's env are in the process env."""
        vendor = next((v for v in self.engine.capabilities().vendors if v != "cpu"), None)
        if vendor is None:
            pytest.skip(f"engine {self.engine.name!r} runs on no accelerator vendor")
        spec = self.spec(vendor=vendor, device_count=2)
        assert spec.env["GPUSTACK_TEST_USER_ENV"] == "1"
        assert any(key.endswith("VISIBLE_DEVICES") for key in spec.env) or vendor == "apple"

    def test_a_category_it_does_not_serve_is_refused(self) -> None:
        """A deployment of a category the engine does not serve is refused."""
        served = self.engine.capabilities().categories
        other = next(c for c in ModelCategory if c not in served)
        with pytest.raises(EngineArgumentError, match="does not serve"):
            self.spec(category=other)

    def test_performance_preset_is_mapped_or_refused(self, preset_scenario: str) -> None:
        """A claimed preset has a golden launch spec with recorded flags; any other is refused."""
        preset = PRESET_SCENARIOS[preset_scenario]
        caps = self.engine.capabilities()
        vendor = next((v for v in caps.vendors if v != "cpu"), caps.vendors[0])
        refusal = preset_refusal(self.engine.name, caps, preset)
        if preset_scenario in self.version_refused_presets:
            assert refusal is None, f"{preset_scenario} is not claimed by the capabilities: {refusal}"
            with pytest.raises(EngineArgumentError, match=self.version_refused_presets[preset_scenario]):
                self.spec(vendor=vendor, performance=preset)
            return
        if refusal is not None:
            with pytest.raises(EngineArgumentError, match="performance preset"):
                self.spec(vendor=vendor, performance=preset)
            return
        spec = self.spec(vendor=vendor, performance=preset)
        assert_matches_golden(spec, self.golden_path(f"preset-{preset_scenario}"))
        for command in commands_of(spec.argv):
            words, known = self.flags_of(command)
            assert unknown_flags(words, known) == [], command
