"""llama.cpp plugin: golden launch specs, emitted flags against the recorded CLI, owned flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine
from gpustack_engine_llama_cpp._cli import LLAMA_SERVER_FLAGS, RPC_SERVER_FLAGS

from gpustack_core.engines import unknown_flags
from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing.engine_requests import (
    assert_matches_golden,
    make_launch_request,
    standard_scenarios,
)
from gpustack_core.types import LaunchRequest, ModelCategory

GOLDEN = Path(__file__).parent / "golden"
EXE = "/opt/engines/llama.cpp/0.3.36/bin/llama-server"

ENGINE = LlamaCppEngine()
SCENARIOS = standard_scenarios(ENGINE.capabilities().vendors, multi_node=True)
SCENARIOS["cpu-embedding"] = {"vendor": "cpu", "category": ModelCategory.EMBEDDING}
SCENARIOS["nvidia-rerank"] = {"vendor": "nvidia", "category": ModelCategory.RERANK}
SCENARIOS["cpu-extra-args"] = {"vendor": "cpu", "extra_args": ("--threads", "4", "--flash-attn=on")}


def request(**kwargs: object) -> LaunchRequest:
    return make_launch_request("llama.cpp", executable=EXE, version="0.3.36", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_launch_spec_matches_golden(scenario: str) -> None:
    spec = ENGINE.launch_spec(request(**SCENARIOS[scenario]))
    assert_matches_golden(spec, GOLDEN / f"{scenario}.json")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_emitted_flags_exist_in_the_recorded_cli(scenario: str) -> None:
    spec = ENGINE.launch_spec(request(**SCENARIOS[scenario]))
    known = RPC_SERVER_FLAGS if spec.argv[0].endswith("rpc-server") else LLAMA_SERVER_FLAGS
    assert unknown_flags(spec.argv, known) == []


def test_owned_flags_are_in_the_recorded_cli() -> None:
    assert ENGINE.owned_flags <= LLAMA_SERVER_FLAGS


def test_visibility_and_user_env_are_passed() -> None:
    spec = ENGINE.launch_spec(request(vendor="nvidia", device_count=2))
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert spec.env["GPUSTACK_TEST_USER_ENV"] == "1"
    assert spec.readiness.path == "/health"
    assert spec.served_model_name == "qwen-chat"


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "1"),
        ("--port=1",),
        ("-m", "/x.gguf"),
        ("--model=/x.gguf",),
        ("-ngl", "3"),
        ("--alias", "x"),
    ],
)
def test_owned_flags_are_refused(args: tuple[str, ...]) -> None:
    flag = args[0].split("=")[0]
    with pytest.raises(EngineArgumentError, match=f"sets {flag} itself"):
        ENGINE.launch_spec(request(vendor="cpu", extra_args=args))


def test_ctx_size_is_owned_only_when_the_deployment_sets_it() -> None:
    with pytest.raises(EngineArgumentError, match="-c itself"):
        ENGINE.launch_spec(request(vendor="cpu", extra_args=("-c", "4096")))
    spec = ENGINE.launch_spec(request(vendor="cpu", context_length=None, extra_args=("-c", "4096")))
    assert spec.argv[-2:] == ("-c", "4096")


def test_unknown_flags_and_negative_values_pass_through() -> None:
    spec = ENGINE.launch_spec(request(vendor="cpu", extra_args=("--seed", "-1", "--some-future-flag")))
    assert spec.argv[-3:] == ("--seed", "-1", "--some-future-flag")


def test_unsupported_category_is_refused() -> None:
    with pytest.raises(EngineArgumentError, match="does not serve 'image'"):
        ENGINE.launch_spec(request(vendor="cpu", category=ModelCategory.IMAGE))


def test_validate_extra_args_refuses_owned_and_keeps_the_rest() -> None:
    assert ENGINE.validate_extra_args(["--seed", "-1"]) == ("--seed", "-1")
    with pytest.raises(EngineArgumentError, match="sets -ngl itself"):
        ENGINE.validate_extra_args(["-ngl", "10"])
