"""llama.cpp plugin: the launch-spec suite (golden specs, recorded CLI, owned and unknown flags), plus
the context-size, negative-value and ``validate_extra_args`` rules of this plugin."""

from __future__ import annotations

import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine
from gpustack_engine_llama_cpp._cli import LLAMA_SERVER_FLAGS, RPC_SERVER_FLAGS

from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import ModelCategory


class TestLlamaCppLaunch(LaunchSpecSuite):
    engine = LlamaCppEngine()
    executable = "/opt/engines/llama.cpp/0.3.36/bin/llama-server"
    version = "0.3.36"
    multi_node = True
    extra_scenarios = {
        "cpu-embedding": {"vendor": "cpu", "category": ModelCategory.EMBEDDING},
        "nvidia-rerank": {"vendor": "nvidia", "category": ModelCategory.RERANK},
        "cpu-extra-args": {"vendor": "cpu", "extra_args": ("--threads", "4", "--flash-attn=on")},
        # over the CPUs of two workers: the head keeps 17 of 33 layers, the RPC server holds 16
        "cpu-multi-node-head": {"vendor": "cpu", "node_count": 2, "rpc_servers": ("10.0.0.2:50052",)},
        "cpu-multi-node-worker": {
            "vendor": "cpu", "node_count": 2, "node_rank": 1, "host": "10.0.0.2", "port": 50052,
        },
    }  # fmt: skip

    def flags_of(self, command: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """``rpc-server`` (subordinate workers) or ``llama-server``, each against its recorded flags."""
        known = RPC_SERVER_FLAGS if command[0].endswith("rpc-server") else LLAMA_SERVER_FLAGS
        return command[1:], known

    def test_owned_flags_are_in_the_recorded_cli(self) -> None:
        assert self.engine.owned_flags <= LLAMA_SERVER_FLAGS

    def test_visibility_and_user_env_are_passed(self) -> None:
        spec = self.spec(vendor="nvidia", device_count=2)
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
    def test_owned_flags_are_refused(self, args: tuple[str, ...]) -> None:
        flag = args[0].split("=")[0]
        with pytest.raises(EngineArgumentError, match=f"sets {flag} itself"):
            self.spec(vendor="cpu", extra_args=args)

    def test_ctx_size_is_owned_only_when_the_deployment_sets_it(self) -> None:
        with pytest.raises(EngineArgumentError, match="-c itself"):
            self.spec(vendor="cpu", extra_args=("-c", "4096"))
        spec = self.spec(vendor="cpu", context_length=None, extra_args=("-c", "4096"))
        assert spec.argv[-2:] == ("-c", "4096")

    def test_unknown_flags_and_negative_values_pass_through(self) -> None:
        spec = self.spec(vendor="cpu", extra_args=("--seed", "-1", "--some-future-flag"))
        assert spec.argv[-3:] == ("--seed", "-1", "--some-future-flag")

    def test_unsupported_category_is_refused(self) -> None:
        with pytest.raises(EngineArgumentError, match="does not serve 'image'"):
            self.spec(vendor="cpu", category=ModelCategory.IMAGE)

    def test_validate_extra_args_refuses_owned_and_keeps_the_rest(self) -> None:
        assert self.engine.validate_extra_args(["--seed", "-1"]) == ("--seed", "-1")
        with pytest.raises(EngineArgumentError, match="sets -ngl itself"):
            self.engine.validate_extra_args(["-ngl", "10"])


@pytest.mark.parametrize(
    ("extra", "rpc_args"),
    [
        (("--threads", "4", "--flash-attn", "on"), ("--threads", "4")),
        (("-t=2", "-lv", "4", "--no-mmap"), ("-t", "2")),
        (("-c", "4096", "--mlock"), ()),  # llama-server's -c is the context size, rpc-server's the cache
    ],
)
def test_subordinates_get_only_the_extra_args_the_rpc_server_takes(
    extra: tuple[str, ...], rpc_args: tuple[str, ...]
) -> None:
    suite = TestLlamaCppLaunch()
    kwargs = {"vendor": "cpu", "node_count": 2, "extra_args": extra, "context_length": None}
    head = suite.spec(**kwargs, rpc_servers=("10.0.0.2:50052",))
    worker = suite.spec(**kwargs, node_rank=1, host="10.0.0.2", port=50052)
    assert head.argv[-len(extra) :] == extra
    assert worker.argv[5:] == rpc_args
    assert worker.argv[1:5] == ("--host", "10.0.0.2", "--port", "50052")
