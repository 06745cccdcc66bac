"""MindIE: the launch-spec suite (golden specs with the generated config.json, owned and passed-through
overrides), plus config keys against the documented set and the config following the placement."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gpustack_engine_mindie import MindieEngine
from gpustack_engine_mindie._config_keys import MINDIE_CONFIG_KEYS

from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import LaunchRequest, LaunchSpec, ModelCategory

EXE = "/usr/local/Ascend/mindie/2.0.RC1/mindie-service/bin/mindieservice_daemon"


def key_paths(node: Any, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(node, list) and node and isinstance(node[0], dict):
        for item in node:
            paths |= key_paths(item, prefix)
        return paths
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= key_paths(value, path)
    return paths


def config_in(spec: LaunchSpec) -> dict[str, Any]:
    """The one file (config.json) a MindIE launch spec writes, parsed."""
    (content,) = spec.files.values()
    return json.loads(content)  # type: ignore[no-any-return]


class TestMindieLaunch(LaunchSpecSuite):
    engine = MindieEngine()
    executable = EXE
    multi_node = False
    request_defaults = {"model_paths": ("/models/qwen2.5-7b",), "vendor": "ascend"}
    extra_scenarios = {
        "ascend-overrides": {
            "vendor": "ascend",
            "device_count": 2,
            "extra_args": (
                "--ServerConfig.maxLinkNum=300",
                "--BackendConfig.ScheduleConfig.maxBatchSize",
                "64",
            ),
        },
    }
    unknown_args = ("--ServerConfig.newKnob=true",)

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """The daemon takes no flags (its settings are in config.json): any flag it is given is unknown."""
        return command[1:], frozenset()

    def assert_passed_through(self, spec: LaunchSpec, args: tuple[str, ...]) -> None:
        """An unknown ``--Section.key=value`` override lands in config.json."""
        assert config_in(spec)["ServerConfig"]["newKnob"] is True

    def config_of(self, req: LaunchRequest) -> dict[str, Any]:
        return config_in(self.engine.launch_spec(req))

    @pytest.mark.parametrize("scenario", ["ascend-single", "ascend-multi-device"])
    def test_generated_keys_are_documented_mindie_keys(self, scenario: str) -> None:
        assert key_paths(self.config_of(self.request(**self.scenarios()[scenario]))) <= MINDIE_CONFIG_KEYS

    def test_config_follows_the_placement(self) -> None:
        req = self.request(vendor="ascend", device_count=4, port=41000, host="10.0.0.5")
        spec = self.engine.launch_spec(req)
        config = self.config_of(req)
        assert config["ServerConfig"]["port"] == 41000
        assert config["ServerConfig"]["ipAddress"] == "10.0.0.5"
        assert config["BackendConfig"]["npuDeviceIds"] == [[0, 1, 2, 3]]
        model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
        assert model["worldSize"] == 4
        assert model["modelWeightPath"] == "/models/qwen2.5-7b"
        assert spec.env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1,2,3"
        assert spec.env["MIES_CONFIG_JSON_PATH"] == "/var/lib/gpustack/instances/qwen-0/config.json"
        assert spec.argv == (EXE,)

    def test_unknown_keys_pass_through_and_bad_arguments_are_refused(self) -> None:
        config = self.config_of(self.request(vendor="ascend", extra_args=("--ServerConfig.newKnob=true",)))
        assert config["ServerConfig"]["newKnob"] is True
        with pytest.raises(EngineArgumentError, match=r"--Section\.key=value"):
            self.spec(vendor="ascend", extra_args=("positional",))
        with pytest.raises(EngineArgumentError, match="needs a value"):
            self.spec(vendor="ascend", extra_args=("--ServerConfig.maxLinkNum",))

    def test_needs_a_work_dir_and_an_llm(self) -> None:
        with pytest.raises(EngineArgumentError, match="work_dir"):
            self.spec(vendor="ascend", work_dir=None)
        with pytest.raises(EngineArgumentError, match="does not serve"):
            self.spec(vendor="ascend", category=ModelCategory.EMBEDDING)

    def test_validate_extra_args_checks_overrides_early(self) -> None:
        assert self.engine.validate_extra_args(["--ServerConfig.maxLinkNum=300"]) == (
            "--ServerConfig.maxLinkNum=300",
        )
        with pytest.raises(EngineArgumentError, match="itself"):
            self.engine.validate_extra_args(["--ServerConfig.port=1"])
