"""MindIE: golden launch specs (with the generated config.json), config keys against the documented
set, owned and passed-through overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpustack_engine_mindie import MindieEngine
from gpustack_engine_mindie._config_keys import MINDIE_CONFIG_KEYS

from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing.engine_requests import (
    assert_matches_golden,
    make_launch_request,
    standard_scenarios,
)
from gpustack_core.types import LaunchRequest, ModelCategory

GOLDEN = Path(__file__).parent / "golden"
ENGINE = MindieEngine()
EXE = "/usr/local/Ascend/mindie/2.0.RC1/mindie-service/bin/mindieservice_daemon"
SCENARIOS = standard_scenarios(ENGINE.capabilities().vendors, multi_node=False)
SCENARIOS["ascend-overrides"] = {
    "vendor": "ascend",
    "device_count": 2,
    "extra_args": ("--ServerConfig.maxLinkNum=300", "--BackendConfig.ScheduleConfig.maxBatchSize", "64"),
}


def request(**kwargs: Any) -> LaunchRequest:
    kwargs.setdefault("model_paths", ("/models/qwen2.5-7b",))
    return make_launch_request("mindie", executable=EXE, version="2.0.RC1", **kwargs)


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


def config_of(req: LaunchRequest) -> dict[str, Any]:
    spec = ENGINE.launch_spec(req)
    (content,) = spec.files.values()
    return json.loads(content)  # type: ignore[no-any-return]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_launch_spec_matches_golden(scenario: str) -> None:
    assert_matches_golden(ENGINE.launch_spec(request(**SCENARIOS[scenario])), GOLDEN / f"{scenario}.json")


@pytest.mark.parametrize("scenario", ["ascend-single", "ascend-multi-device"])
def test_generated_keys_are_documented_mindie_keys(scenario: str) -> None:
    assert key_paths(config_of(request(**SCENARIOS[scenario]))) <= MINDIE_CONFIG_KEYS


def test_config_follows_the_placement() -> None:
    req = request(vendor="ascend", device_count=4, port=41000, host="10.0.0.5")
    spec = ENGINE.launch_spec(req)
    config = config_of(req)
    assert config["ServerConfig"]["port"] == 41000
    assert config["ServerConfig"]["ipAddress"] == "10.0.0.5"
    assert config["BackendConfig"]["npuDeviceIds"] == [[0, 1, 2, 3]]
    model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert model["worldSize"] == 4
    assert model["modelWeightPath"] == "/models/qwen2.5-7b"
    assert spec.env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1,2,3"
    assert spec.env["MIES_CONFIG_JSON_PATH"] == "/var/lib/gpustack/instances/qwen-0/config.json"
    assert spec.argv == (EXE,)


@pytest.mark.parametrize("flag", sorted(ENGINE.owned_flags))
def test_owned_keys_are_refused(flag: str) -> None:
    for args in ((flag, "1"), (f"{flag}=1",)):
        with pytest.raises(EngineArgumentError, match="itself"):
            ENGINE.launch_spec(request(vendor="ascend", extra_args=args))


def test_unknown_keys_pass_through_and_bad_arguments_are_refused() -> None:
    config = config_of(request(vendor="ascend", extra_args=("--ServerConfig.newKnob=true",)))
    assert config["ServerConfig"]["newKnob"] is True
    with pytest.raises(EngineArgumentError, match=r"--Section\.key=value"):
        ENGINE.launch_spec(request(vendor="ascend", extra_args=("positional",)))
    with pytest.raises(EngineArgumentError, match="needs a value"):
        ENGINE.launch_spec(request(vendor="ascend", extra_args=("--ServerConfig.maxLinkNum",)))


def test_needs_a_work_dir_and_an_llm() -> None:
    with pytest.raises(EngineArgumentError, match="work_dir"):
        ENGINE.launch_spec(request(vendor="ascend", work_dir=None))
    with pytest.raises(EngineArgumentError, match="does not serve"):
        ENGINE.launch_spec(request(vendor="ascend", category=ModelCategory.EMBEDDING))


def test_validate_extra_args_checks_overrides_early() -> None:
    assert ENGINE.validate_extra_args(["--ServerConfig.maxLinkNum=300"]) == ("--ServerConfig.maxLinkNum=300",)
    with pytest.raises(EngineArgumentError, match="itself"):
        ENGINE.validate_extra_args(["--ServerConfig.port=1"])
