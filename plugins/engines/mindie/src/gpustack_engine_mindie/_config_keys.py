"""The MindIE config.json keys this plugin writes, recorded from MindIE's documentation.

Source: MindIE-LLM ``docs/zh/user_guide/user_manual/service_parameter_configuration.md``
(section "config parameters (service)", at commit 2ad5b22e0b8e71725f7cf03536a4820d79381515): the tables of
the top level, ServerConfig, BackendConfig, ModelDeployConfig, ModelConfig and ScheduleConfig.
Paths are dotted; ``ModelConfig`` is a list whose entries take the ModelConfig keys.
"""

from __future__ import annotations

__all__ = ["MINDIE_CONFIG_KEYS"]

_SERVER = (
    "ipAddress managementIpAddress port managementPort metricsPort allowAllZeroIpListening maxLinkNum "
    "httpsEnabled fullTextEnabled inferMode interCommTLSEnabled interCommPort openAiSupport tokenTimeout "
    "e2eTimeout maxRequestLength distDPServerEnabled"
)
_BACKEND = (
    "backendName modelInstanceNumber npuDeviceIds tokenizerProcessNumber multiNodesInferEnabled "
    "multiNodesInferPort interNodeTLSEnabled ModelDeployConfig ScheduleConfig"
)
_DEPLOY = "maxSeqLen maxInputTokenLen truncation ModelConfig"
_MODEL = (
    "modelInstanceType modelName modelWeightPath worldSize cpuMemSize npuMemSize backendType trustRemoteCode"
)
_SCHEDULE = (
    "templateType templateName cacheBlockSize maxPrefillBatchSize maxPrefillTokens prefillTimeMsPerReq "
    "prefillPolicyType decodeTimeMsPerReq decodePolicyType maxBatchSize maxIterTimes maxPreemptCount "
    "supportSelectBatch maxQueueDelayMicroseconds maxFirstTokenWaitTime"
)

MINDIE_CONFIG_KEYS: frozenset[str] = frozenset(
    {"Version", "ServerConfig", "BackendConfig", "LogConfig"}
    | {f"ServerConfig.{k}" for k in _SERVER.split()}
    | {f"BackendConfig.{k}" for k in _BACKEND.split()}
    | {f"BackendConfig.ModelDeployConfig.{k}" for k in _DEPLOY.split()}
    | {f"BackendConfig.ModelDeployConfig.ModelConfig.{k}" for k in _MODEL.split()}
    | {f"BackendConfig.ScheduleConfig.{k}" for k in _SCHEDULE.split()}
)
