"""MindIE: the launch-spec suite (golden specs with the generated config.json, owned and passed-through
overrides), plus config keys against the documented set and the config following the placement, and
multi-node: the rank table of a 2-worker x 8-NPU group on head and worker, and its refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gpustack_engine_mindie import MindieEngine, build_rank_table
from gpustack_engine_mindie._config_keys import MINDIE_CONFIG_KEYS

from gpustack_core.errors import EngineArgumentError
from gpustack_core.testing import LaunchSpecSuite
from gpustack_core.types import GroupMember, LaunchRequest, LaunchSpec, ModelCategory

EXE = "/usr/local/Ascend/mindie/2.0.RC1/mindie-service/bin/mindieservice_daemon"
WORK = "/var/lib/gpustack/instances/qwen-0"
#: test data: each NPU's device IP (as hccn_tool would report it), distinct per worker and NPU
DEVICE_IPS = {"device_ip": "192.168.1{rank}.1{index}"}
#: a 2-worker x 8-NPU placement: the head publishes 10.0.0.1:29500, the worker is 10.0.0.2
MULTI_NODE = {
    "vendor": "ascend",
    "device_count": 8,
    "node_count": 2,
    "head_address": "10.0.0.1:29500",
    "device_extra": DEVICE_IPS,
}


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
    """The config.json a MindIE launch spec writes, parsed."""
    return json.loads(spec.files[f"{WORK}/config.json"])  # type: ignore[no-any-return]


def rank_table_in(spec: LaunchSpec) -> dict[str, Any]:
    """The ranktable.json a multi-node MindIE launch spec writes, parsed."""
    return json.loads(spec.files[f"{WORK}/ranktable.json"])  # type: ignore[no-any-return]


class TestMindieLaunch(LaunchSpecSuite):
    engine = MindieEngine()
    executable = EXE
    request_defaults = {"model_paths": ("/models/qwen2.5-7b",), "vendor": "ascend"}
    extra_scenarios = {
        # the standard multi-node scenarios, on 8 NPUs per worker with their device IPs
        "ascend-multi-node-head": {**MULTI_NODE, "node_rank": 0},
        "ascend-multi-node-worker": {**MULTI_NODE, "node_rank": 1, "host": "10.0.0.2", "port": 50052},
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

    @pytest.mark.parametrize(
        "scenario",
        ["ascend-single", "ascend-multi-device", "ascend-multi-node-head", "ascend-multi-node-worker"],
    )
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

    # ------------------------------------------------------------------ multi-node

    @pytest.mark.parametrize("rank", [0, 1])
    def test_every_rank_writes_the_same_rank_table_of_the_whole_group(self, rank: int) -> None:
        spec = self.spec(**MULTI_NODE, node_rank=rank)
        table = rank_table_in(spec)
        assert table == rank_table_in(self.spec(**MULTI_NODE, node_rank=1 - rank))
        assert (table["version"], table["server_count"], table["status"]) == ("1.0", "2", "completed")
        head, worker = table["server_list"]
        assert (head["server_id"], head["container_ip"]) == ("10.0.0.1", "10.0.0.1")  # the master first
        assert (worker["server_id"], worker["container_ip"]) == ("10.0.0.2", "10.0.0.2")
        assert [d["device_id"] for d in head["device"]] == [str(i) for i in range(8)]
        assert [d["rank_id"] for d in head["device"] + worker["device"]] == [str(i) for i in range(16)]
        assert worker["device"][3] == {"device_id": "3", "device_ip": "192.168.11.13", "rank_id": "11"}

    @pytest.mark.parametrize("rank", [0, 1])
    def test_multi_node_config_and_environment(self, rank: int) -> None:
        spec = self.spec(**MULTI_NODE, node_rank=rank)
        own = f"10.0.0.{rank + 1}"
        config = config_in(spec)
        backend = config["BackendConfig"]
        assert backend["multiNodesInferEnabled"] is True
        assert backend["multiNodesInferPort"] == 29500  # the head's published port, on every rank
        assert backend["npuDeviceIds"] == [list(range(8))]
        assert backend["ModelDeployConfig"]["ModelConfig"][0]["worldSize"] == 8  # this worker's NPUs
        assert config["ServerConfig"]["ipAddress"] == own
        assert spec.env["RANK_TABLE_FILE"] == spec.env["RANKTABLEFILE"] == f"{WORK}/ranktable.json"
        assert (spec.env["WORLD_SIZE"], spec.env["MIES_CONTAINER_IP"], spec.env["HOST_IP"]) == (
            "16",
            own,
            own,
        )
        assert "ASCEND_RT_VISIBLE_DEVICES" not in spec.env  # the rank table names the physical NPUs
        assert spec.env["GPUSTACK_TEST_USER_ENV"] == "1"
        assert spec.probe_host == own
        assert spec.readiness_mode == ("http" if rank == 0 else "process")

    def test_the_deployment_env_still_wins_in_multi_node(self) -> None:
        req = self.request(**MULTI_NODE, node_rank=0)
        env = {"GPUSTACK_TEST_USER_ENV": "1", "HCCL_CONNECT_TIMEOUT": "600", "ASCEND_RT_VISIBLE_DEVICES": "0"}
        req = req.model_copy(update={"deployment": req.deployment.model_copy(update={"env": env})})
        spec = self.engine.launch_spec(req)
        assert spec.env["HCCL_CONNECT_TIMEOUT"] == "600"
        assert spec.env["ASCEND_RT_VISIBLE_DEVICES"] == "0"

    def test_missing_device_ips_are_refused_naming_the_npus(self) -> None:
        req = self.request(**MULTI_NODE, node_rank=0)
        head, worker = req.group
        bare = tuple(d.model_copy(update={"extra": {}}) if d.index in (2, 5) else d for d in worker.devices)
        group = (head, worker.model_copy(update={"devices": bare}))
        with pytest.raises(EngineArgumentError, match=r"device IP.*worker-1:2, worker-1:5.*hccn_tool"):
            self.engine.launch_spec(req.model_copy(update={"group": group}))
        with pytest.raises(EngineArgumentError, match=r"device IP.*worker-0:0"):
            self.spec(**{**MULTI_NODE, "device_extra": None}, node_rank=1)

    def test_an_incomplete_group_is_refused(self) -> None:
        req = self.request(**MULTI_NODE, node_rank=1)
        with pytest.raises(EngineArgumentError, match=r"every worker of the group.*got ranks \[1\]"):
            build_rank_table(req.model_copy(update={"group": req.group[1:]}))
        with pytest.raises(EngineArgumentError, match=r"got ranks \[\]"):
            self.engine.launch_spec(req.model_copy(update={"group": ()}))

    def test_unequal_npu_counts_are_refused(self) -> None:
        req = self.request(**MULTI_NODE, node_rank=0)
        head, worker = req.group
        group = (
            head,
            GroupMember(rank=1, worker=worker.worker, address=worker.address, devices=worker.devices[:4]),
        )
        with pytest.raises(EngineArgumentError, match=r"same number of NPUs.*'worker-0': 8, 'worker-1': 4"):
            self.engine.launch_spec(req.model_copy(update={"group": group}))

    def test_a_missing_head_address_is_refused(self) -> None:
        with pytest.raises(EngineArgumentError, match="head_address"):
            self.spec(**{**MULTI_NODE, "head_address": None}, node_rank=1)
        with pytest.raises(EngineArgumentError, match="expected host:port"):
            self.spec(**{**MULTI_NODE, "head_address": "10.0.0.1:http"}, node_rank=1)

    def test_capabilities_claim_multi_worker_head_first(self) -> None:
        caps = self.engine.capabilities()
        assert caps.multi_worker
        assert caps.multi_worker_order == "head_first"
        assert caps.subordinates_need_weights
