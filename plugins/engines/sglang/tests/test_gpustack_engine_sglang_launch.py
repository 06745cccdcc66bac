"""SglangEngine: golden launch specs, emitted flags against the recorded CLI, owned and unknown flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_engine_sglang import SglangEngine
from gpustack_engine_sglang._cli import SGLANG_FLAGS

from gpustack_core.engines import commands_of, unknown_flags
from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing.engine_requests import (
    assert_matches_golden,
    make_launch_request,
    standard_scenarios,
)
from gpustack_core.types import LaunchRequest, ModelCategory

GOLDEN = Path(__file__).parent / "golden"
ENGINE = SglangEngine()
EXE = "/opt/engines/sglang/0.4.1/bin/python"
CAPS = ENGINE.capabilities()
SCENARIOS = standard_scenarios(CAPS.vendors, multi_node=CAPS.multi_worker)
SCENARIOS["nvidia-embedding"] = {"vendor": "nvidia", "category": ModelCategory.EMBEDDING}


def request(**kwargs: object) -> LaunchRequest:
    kwargs.setdefault("category", CAPS.categories[0])
    kwargs.setdefault("model_paths", ("/models/qwen/model-00001-of-00002.safetensors",))
    return make_launch_request(ENGINE.name, executable=EXE, version=ENGINE.default_version(), **kwargs)  # type: ignore[arg-type]


def flags_of(command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
    """The part of a command that holds the engine's flags, and the recorded set to check it against."""
    assert command[1:3] == ("-m", "sglang.launch_server")
    return command[3:], SGLANG_FLAGS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_launch_spec_matches_golden(scenario: str) -> None:
    assert_matches_golden(ENGINE.launch_spec(request(**SCENARIOS[scenario])), GOLDEN / f"{scenario}.json")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_emitted_flags_exist_in_the_recorded_cli(scenario: str) -> None:
    spec = ENGINE.launch_spec(request(**SCENARIOS[scenario]))
    for command in commands_of(spec.argv):
        words, known = flags_of(command)
        assert unknown_flags(words, known) == [], command


@pytest.mark.parametrize("flag", sorted(ENGINE.owned_flags))
def test_owned_flags_are_refused_in_both_forms(flag: str) -> None:
    for args in ((flag, "1"), (f"{flag}=1",)):
        with pytest.raises(EngineArgumentError, match=f"sets {flag} itself"):
            ENGINE.launch_spec(request(extra_args=args))


def test_unknown_flags_pass_through() -> None:
    spec = ENGINE.launch_spec(request(extra_args=("--some-new-flag", "7")))
    assert "--some-new-flag" in " ".join(spec.argv)


def test_visibility_and_user_env_reach_the_process() -> None:
    vendor = next(v for v in CAPS.vendors if v != "cpu")
    spec = ENGINE.launch_spec(request(vendor=vendor, device_count=2))
    assert spec.env["GPUSTACK_TEST_USER_ENV"] == "1"
    assert any(key.endswith("VISIBLE_DEVICES") for key in spec.env) or vendor == "apple"


def test_a_category_it_does_not_serve_is_refused() -> None:
    other = next(c for c in ModelCategory if c not in CAPS.categories)
    with pytest.raises(EngineArgumentError, match="does not serve"):
        ENGINE.launch_spec(request(category=other))
