"""gpustack-core engine plugin for Huawei MindIE (``mindieservice_daemon`` on Ascend NPUs).

MindIE has no command-line options: it reads ``config.json`` from ``$MIES_CONFIG_JSON_PATH`` (else
``$MIES_INSTALL_PATH/conf/config.json``). The plugin generates that file for the placement (see
:func:`build_config`) into the instance's ``work_dir``, and passes its path in the environment.
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


__all__ = ["MindieEngine", "apply_overrides", "build_config", "gpustack_register_engines"]

#: Config keys the plugin sets from the placement; overriding them is refused.
OWNED_KEYS: frozenset[str] = frozenset(
    {
        "ServerConfig.ipAddress",
        "ServerConfig.managementIpAddress",
        "ServerConfig.port",
        "ServerConfig.managementPort",
        "ServerConfig.metricsPort",
        "BackendConfig.npuDeviceIds",
        "BackendConfig.ModelDeployConfig.ModelConfig.modelName",
        "BackendConfig.ModelDeployConfig.ModelConfig.modelWeightPath",
        "BackendConfig.ModelDeployConfig.ModelConfig.worldSize",
    }
)
OWNED_FLAGS: frozenset[str] = frozenset(f"--{key}" for key in OWNED_KEYS)
DEFAULT_INSTALL = "/usr/local/Ascend/mindie/latest/mindie-service"


def build_config(request: LaunchRequest) -> dict[str, Any]:
    """MindIE's config.json for one replica (fields as in MindIE's "config.json parameters").

    The business API listens on ``request.port``; the management and metrics endpoints on the
    next two ports. NPUs are numbered from 0 because the accelerator plugin's
    ``ASCEND_RT_VISIBLE_DEVICES`` makes only the placement's devices visible.
    """
    devices = engines.accelerated_devices(request)
    world = max(1, len(devices))
    context = request.deployment.context_length or 8192
    host = request.host
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
            "multiNodesInferEnabled": False,
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
    """MindIE on Ascend NPUs, one worker, tensor parallel over its NPUs (``worldSize``)."""

    name = "mindie"
    owned_flags = OWNED_FLAGS

    def capabilities(self) -> EngineCapabilities:
        """safetensors LLMs on Ascend NPUs."""
        from gpustack_core.types import EngineCapabilities

        return EngineCapabilities(
            formats=(ModelFormat.SAFETENSORS,),
            categories=(ModelCategory.LLM,),
            vendors=("ascend",),
            tensor_parallel=True,
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
        """``mindieservice_daemon`` with a generated config.json in ``request.work_dir``."""
        engines.check_served(self, request, "multi-node needs a rank table")
        engines.model_path(self, request)  # refuses a request without one: build_config serves it
        if request.work_dir is None:
            raise EngineArgumentError(
                "engine 'mindie' writes its config.json into the instance's work_dir; set it"
            )
        config = apply_overrides(build_config(request), request.deployment.extra_args)
        config_path = str(Path(request.work_dir) / "config.json")
        install = request.installation.prefix or str(Path(request.installation.executable).parent.parent)
        return engines.make_launch_spec(
            request,
            (request.installation.executable,),
            health_path="/v1/models",
            extra_env={"MIES_CONFIG_JSON_PATH": config_path, "MIES_INSTALL_PATH": install},
            ready_timeout_s=1800.0,
            cwd=request.work_dir,
            files={config_path: json.dumps(config, indent=2)},
        )


@hookimpl
def gpustack_register_engines(register: Callable[[Engine], None]) -> None:
    """Register the MindIE engine."""
    register(MindieEngine())
