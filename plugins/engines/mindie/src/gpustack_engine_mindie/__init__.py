"""gpustack-core engine plugin for Huawei MindIE (``mindieservice_daemon`` on Ascend NPUs).

MindIE has no command-line options: it reads ``config.json`` from ``$MIES_CONFIG_JSON_PATH`` (else
``$MIES_INSTALL_PATH/conf/config.json``). The plugin generates that file for the placement (see
:func:`build_config`) into the instance's ``work_dir``, and passes its path in the environment.

Over several workers every rank runs the same daemon with ``multiNodesInferEnabled`` and an HCCL
rank table (:func:`build_rank_table`, ``ranktable.json`` next to ``config.json``) that lists every
worker of the group with its NPUs' device IPs; rank 0 (the first server of the table) serves the API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpustack_core import Engine, engines, hookimpl
from gpustack_core.errors import EngineArgumentError
from gpustack_core.types import ModelCategory, ModelFormat

if TYPE_CHECKING:
    from gpustack_core.types import EngineCapabilities, EngineInstallation, LaunchRequest, LaunchSpec


__all__ = [
    "DEVICE_IP_EXTRA",
    "MindieEngine",
    "apply_overrides",
    "build_config",
    "build_rank_table",
    "gpustack_register_engines",
]

#: Config keys the plugin sets from the placement; overriding them is refused.
OWNED_KEYS: frozenset[str] = frozenset(
    {
        "ServerConfig.ipAddress",
        "ServerConfig.managementIpAddress",
        "ServerConfig.port",
        "ServerConfig.managementPort",
        "ServerConfig.metricsPort",
        "BackendConfig.npuDeviceIds",
        "BackendConfig.multiNodesInferEnabled",
        "BackendConfig.multiNodesInferPort",
        "BackendConfig.ModelDeployConfig.ModelConfig.modelName",
        "BackendConfig.ModelDeployConfig.ModelConfig.modelWeightPath",
        "BackendConfig.ModelDeployConfig.ModelConfig.worldSize",
    }
)
OWNED_FLAGS: frozenset[str] = frozenset(f"--{key}" for key in OWNED_KEYS)
DEFAULT_INSTALL = "/usr/local/Ascend/mindie/latest/mindie-service"
#: ``Device.extra`` key of an NPU's device (RoCE) IP, as ``hccn_tool -i <index> -ip -g`` prints it
#: (``ipaddr:...``); the rank table needs it for every NPU of a multi-node placement.
DEVICE_IP_EXTRA = "device_ip"
RANK_TABLE_NAME = "ranktable.json"
#: HCCL settings GPUStack's MindIE backend sets for a distributed instance (the deployment's env wins)
MULTI_NODE_ENV: dict[str, str] = {
    "ATB_LLM_HCCL_ENABLE": "1",
    "ATB_LLM_COMM_BACKEND": "hccl",
    "HCCL_CONNECT_TIMEOUT": "7200",
}


def build_config(request: LaunchRequest) -> dict[str, Any]:
    """MindIE's config.json for one replica (fields as in MindIE's "config.json parameters").

    The business API listens on ``request.port``; the management and metrics endpoints on the
    next two ports. NPUs are numbered from 0 because the accelerator plugin's
    ``ASCEND_RT_VISIBLE_DEVICES`` makes only the placement's devices visible. Over several workers
    (as in GPUStack) ``worldSize`` and ``npuDeviceIds`` stay this worker's, the listen address is
    this worker's group address (MindIE binds ``$MIES_CONTAINER_IP`` there anyway), and
    ``multiNodesInferPort`` is the port of the head's published address, the same on every rank.
    """
    devices = engines.accelerated_devices(request)
    world = max(1, len(devices))
    context = request.deployment.context_length or 8192
    multi_node = request.node_count > 1
    host = _own_address(request) if multi_node else request.host
    backend_multi: dict[str, Any] = {"multiNodesInferEnabled": multi_node}
    if multi_node:
        backend_multi["multiNodesInferPort"] = _head_port(request)
    return {
        "Version": "1.0.0",
        "ServerConfig": {
            "ipAddress": host,
            "managementIpAddress": host,
            "port": request.port,
            "managementPort": request.port + 1,
            "metricsPort": request.port + 2,
            "allowAllZeroIpListening": host == "0.0.0.0",
            "maxLinkNum": 1000,
            "httpsEnabled": False,
            "fullTextEnabled": False,
            "interCommTLSEnabled": False,
            "inferMode": "standard",
            "openAiSupport": "vllm",
            "tokenTimeout": 600,
            "e2eTimeout": 600,
            "distDPServerEnabled": False,
        },
        "BackendConfig": {
            "backendName": "mindieservice_llm_engine",
            "modelInstanceNumber": 1,
            "npuDeviceIds": [list(range(world))],
            "tokenizerProcessNumber": 8,
            **backend_multi,
            "interNodeTLSEnabled": False,
            "ModelDeployConfig": {
                "maxSeqLen": context,
                "maxInputTokenLen": context,
                "truncation": False,
                "ModelConfig": [
                    {
                        "modelInstanceType": "Standard",
                        "modelName": engines.served_model_name(request),
                        "modelWeightPath": request.model_paths[0],
                        "worldSize": world,
                        "cpuMemSize": 5,
                        "npuMemSize": -1,
                        "backendType": "atb",
                        "trustRemoteCode": False,
                    }
                ],
            },
            "ScheduleConfig": {
                "templateType": "Standard",
                "templateName": "Standard_LLM",
                "cacheBlockSize": 128,
                "maxPrefillBatchSize": 50,
                "maxPrefillTokens": context,
                "prefillTimeMsPerReq": 150,
                "prefillPolicyType": 0,
                "decodeTimeMsPerReq": 50,
                "decodePolicyType": 0,
                "maxBatchSize": 200,
                "maxIterTimes": context,
                "maxPreemptCount": 0,
                "supportSelectBatch": False,
                "maxQueueDelayMicroseconds": 5000,
            },
        },
    }


def _own_address(request: LaunchRequest) -> str:
    """This worker's address in the group (the rank table's ``container_ip``)."""
    own = next((m.address for m in request.group if m.rank == request.node_rank), None)
    if own is None:
        raise EngineArgumentError(
            f"engine 'mindie' multi-node needs this worker (rank {request.node_rank}) in LaunchRequest.group "
            "with its address; the server sends the group with the assignment"
        )
    return own


def _head_port(request: LaunchRequest) -> int:
    """The port of the head's published address: MindIE's inter-node port on every rank."""
    address = request.head_address
    if not address or ":" not in address:
        raise EngineArgumentError(
            "engine 'mindie' multi-node needs the head's address as host:port (head_address), "
            f"got {address!r}"
        )
    try:
        return int(address.rsplit(":", 1)[1])
    except ValueError as exc:
        raise EngineArgumentError(f"invalid head address {address!r}: expected host:port") from exc


def build_rank_table(request: LaunchRequest) -> dict[str, Any]:
    """The HCCL rank table of a multi-node placement, the same on every rank.

    One server per worker of ``request.group`` in rank order (the head first: MindIE's master),
    ``server_id`` and ``container_ip`` its address; one device per placed NPU with its physical
    index as ``device_id``, its device IP from ``Device.extra["device_ip"]`` and a global
    ``rank_id`` (rank-0 NPUs first). Layout as GPUStack's MindIE backend writes it.

    Raises:
        EngineArgumentError: the group is incomplete, its workers hold different NPU counts, or an NPU
            has no device IP (naming the worker and NPU, and where the IP comes from).
    """
    group = sorted(request.group, key=lambda m: m.rank)
    if [m.rank for m in group] != list(range(request.node_count)):
        raise EngineArgumentError(
            f"engine 'mindie' multi-node needs every worker of the group with its address and devices "
            f"(LaunchRequest.group, ranks 0..{request.node_count - 1}); got ranks {[m.rank for m in group]}. "
            "The server sends them with the assignment: check that every worker of the placement is "
            "registered"
        )
    counts = {m.worker: len([d for d in m.devices if d.device_type != "cpu"]) for m in group}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise EngineArgumentError(
            f"engine 'mindie' multi-node needs the same number of NPUs (at least one) on every worker, "
            f"got {counts}; place the deployment on equal NPU counts"
        )
    missing = [
        f"{m.worker}:{d.index}"
        for m in group
        for d in m.devices
        if d.device_type != "cpu" and not d.extra.get(DEVICE_IP_EXTRA)
    ]
    if missing:
        raise EngineArgumentError(
            f"engine 'mindie' multi-node needs each NPU's device IP for the HCCL rank table; missing on "
            f"{', '.join(missing)}. The accelerator plugin must report it as "
            f"Device.extra[{DEVICE_IP_EXTRA!r}] (the ipaddr that `hccn_tool -i <index> -ip -g` prints), "
            "which the built-in cann plugin does not report yet; until then serve the model on one worker"
        )
    servers = []
    rank_id = 0
    for member in group:
        device_list = []
        for device in sorted((d for d in member.devices if d.device_type != "cpu"), key=lambda d: d.index):
            device_list.append(
                {
                    "device_id": str(device.index),
                    "device_ip": device.extra[DEVICE_IP_EXTRA],
                    "rank_id": str(rank_id),
                }
            )
            rank_id += 1
        servers.append({"server_id": member.address, "container_ip": member.address, "device": device_list})
    return {
        "version": "1.0",
        "server_count": str(len(servers)),
        "server_list": servers,
        "status": "completed",
    }


def _parse_overrides(args: Sequence[str]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) < 3:
            raise EngineArgumentError(
                f"engine 'mindie' takes config overrides as --Section.key=value, got {arg!r}"
            )
        key, sep, raw = arg[2:].partition("=")
        if not sep:
            if index + 1 >= len(args):
                raise EngineArgumentError(f"engine 'mindie': {arg} needs a value (--{key}=VALUE)")
            raw = args[index + 1]
            index += 1
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        pairs.append((key, value))
        index += 1
    return pairs


def apply_overrides(config: dict[str, Any], args: Sequence[str]) -> dict[str, Any]:
    """Apply ``--Section.key=value`` overrides (JSON values, else strings) to ``config``.

    ``ModelConfig`` keys apply to its first entry; unknown keys are added (passed through).

    Raises:
        EngineArgumentError: an owned key, or a malformed argument.
    """
    for key, value in _parse_overrides(args):
        if key in OWNED_KEYS:
            raise EngineArgumentError(
                f"engine 'mindie' sets --{key} itself (from the placement and the model); remove it from "
                "the deployment's extra arguments"
            )
        node: Any = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if isinstance(node, list):
                node = node[0]
        node[parts[-1]] = value
    return config


class MindieEngine(engines.VersionedEngine):
    """MindIE on Ascend NPUs: tensor parallel over a worker's NPUs (``worldSize``), and over several
    workers with an HCCL rank table (head first: it publishes the inter-node port, the others join)."""

    name = "mindie"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """safetensors LLMs on Ascend NPUs, on one worker or several (every rank loads the weights)."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=(ModelCategory.LLM,),
            vendors=("ascend",),
            tensor_parallel=True,
            multi_worker=True,
            multi_worker_order="head_first",
            openai_endpoints=engines.TEXT_ENDPOINTS,
        )

    def default_version(self) -> str:
        """The MindIE release this plugin's config layout follows."""
        return "2.0.RC1"

    def system_installations(self) -> list[EngineInstallation]:
        """``$MIES_INSTALL_PATH`` (or the default Ascend path) when its daemon exists, as version
        ``system``; installations recorded under the engines directory are listed after it."""
        from gpustack_core.types import EngineInstallation

        install = Path(os.environ.get("MIES_INSTALL_PATH", DEFAULT_INSTALL))
        daemon = install / "bin" / "mindieservice_daemon"
        if not daemon.is_file():
            return []
        return [
            EngineInstallation(
                engine=self.name,
                version="system",
                executable=str(daemon),
                prefix=str(install),
                origin="located",
            )
        ]

    def validate_extra_args(self, args: Sequence[str]) -> tuple[str, ...]:
        """Config overrides must be ``--Section.key=value`` (or ``--Section.key value``) and must not
        touch a key the plugin sets."""
        apply_overrides({}, args)
        return tuple(args)

    def launch_spec(self, request: LaunchRequest) -> LaunchSpec:
        """``mindieservice_daemon`` with a generated config.json in ``request.work_dir``; over several
        workers, on every rank, with the group's rank table (``ranktable.json``) next to it.

        Multi-node follows GPUStack's MindIE backend: ``RANK_TABLE_FILE`` (and ``RANKTABLEFILE``),
        ``WORLD_SIZE`` (all NPUs of the group), ``MIES_CONTAINER_IP``/``HOST_IP`` (this worker's
        address), and no ``ASCEND_RT_VISIBLE_DEVICES``: the rank table names the physical NPUs.
        Rank 0 serves the API (readiness on ``/v1/models``); the other ranks are ready once running.
        """
        engines.check_served(self, request)
        engines.model_path(self, request)  # refuses a request without one: build_config serves it
        if request.work_dir is None:
            raise EngineArgumentError(
                "engine 'mindie' writes its config.json into the instance's work_dir; set it"
            )
        table = build_rank_table(request) if request.node_count > 1 else None
        config = apply_overrides(build_config(request), request.deployment.extra_args)
        work_dir = Path(request.work_dir)
        config_path = str(work_dir / "config.json")
        install = request.installation.prefix or str(Path(request.installation.executable).parent.parent)
        env = {"MIES_CONFIG_JSON_PATH": config_path, "MIES_INSTALL_PATH": install}
        files = {config_path: json.dumps(config, indent=2)}
        if table is None:
            return engines.make_launch_spec(
                request,
                (request.installation.executable,),
                health_path="/v1/models",
                extra_env=env,
                ready_timeout_s=1800.0,
                cwd=request.work_dir,
                files=files,
            )
        table_path = str(work_dir / RANK_TABLE_NAME)
        files[table_path] = json.dumps(table, indent=2)
        own = _own_address(request)
        world = sum(len(server["device"]) for server in table["server_list"])
        env.update(MULTI_NODE_ENV)
        env.update(
            {
                "RANK_TABLE_FILE": table_path,
                "RANKTABLEFILE": table_path,
                "WORLD_SIZE": str(world),
                "MIES_CONTAINER_IP": own,
                "HOST_IP": own,
            }
        )
        head = request.node_rank == 0
        spec = engines.make_launch_spec(
            request,
            (request.installation.executable,),
            health_path="/v1/models" if head else None,
            extra_env=env,
            readiness_mode="http" if head else "process",
            ready_timeout_s=1800.0,
            cwd=request.work_dir,
            files=files,
        )
        user_env = request.deployment.env
        visible = {k: v for k, v in spec.env.items() if k not in request.visibility_env or k in user_env}
        return spec.model_copy(update={"env": visible, "probe_host": own})


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the MindIE engine."""
    register(MindieEngine())
