"""Small pieces an engine plugin's ``launch_spec`` is built from.

Checks that refuse what the engine cannot serve (:func:`check_served`, :func:`user_args`,
:func:`model_path`), facts taken from the request (:func:`served_model_name`,
:func:`model_directory`, :func:`accelerated_devices`, :func:`gpu_layers`, :func:`tensor_split`),
and :func:`make_launch_spec`, which fills in what every spec of an HTTP engine has in common.
Each error is an :class:`~gpustack_core.errors.EngineArgumentError` naming the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gpustack_core.errors import EngineArgumentError

from .flags import refuse_owned_flags

if TYPE_CHECKING:
    from gpustack_core.contracts import Engine
    from gpustack_core.types import Device, LaunchRequest, LaunchSpec

__all__ = [
    "SAFETENSORS_FILES",
    "accelerated_devices",
    "check_served",
    "gpu_layers",
    "launch_env",
    "make_launch_spec",
    "model_directory",
    "model_path",
    "probe_host",
    "served_model_name",
    "tensor_split",
    "user_args",
]

#: Endings of a model's files (not its directory) for engines that serve a safetensors directory.
SAFETENSORS_FILES: tuple[str, ...] = (".safetensors", ".json")


def served_model_name(request: LaunchRequest) -> str:
    """The name clients use: ``Deployment.served_model_name`` or else the deployment's name."""
    return request.deployment.served_model_name or request.deployment.name


def launch_env(request: LaunchRequest, **extra: str) -> dict[str, str]:
    """The engine's environment additions: the accelerator plugin's visibility variables, then
    ``extra`` from the engine plugin, then the deployment's own ``env`` (the user has the last word)."""
    return {**request.visibility_env, **extra, **request.deployment.env}


def accelerated_devices(request: LaunchRequest) -> tuple[Device, ...]:
    """The request's devices that are not the host CPU."""
    return tuple(d for d in request.devices if d.device_type != "cpu")


def probe_host(request: LaunchRequest) -> str:
    """Where the supervisor reaches the engine: loopback for a wildcard listen address
    (``0.0.0.0``, ``::``), else the address the engine listens on."""
    return "127.0.0.1" if request.host in ("0.0.0.0", "::", "") else request.host


def user_args(engine: Engine, request: LaunchRequest, context_flags: Iterable[str] = ()) -> tuple[str, ...]:
    """The deployment's extra arguments, to append to the engine's argv.

    Parameters:
        engine: its ``owned_flags`` are refused (see :func:`~gpustack_core.engines.refuse_owned_flags`).
        request: the launch request whose ``deployment.extra_args`` are checked.
        context_flags: every spelling of the engine's context-length flag: owned as well when the
            deployment sets ``context_length`` (the plugin emits it then), free otherwise.

    Raises:
        EngineArgumentError: an owned flag, naming it.
    """
    deployment = request.deployment
    owned = engine.owned_flags | frozenset(context_flags if deployment.context_length else ())
    return refuse_owned_flags(engine.name, deployment.extra_args, owned)


def check_served(engine: Engine, request: LaunchRequest, one_worker_reason: str = "") -> None:
    """Refuse a deployment of a category the engine does not claim, a performance preset it does not
    claim (mode, speculative method, KV-cache extension), and a placement over several workers when
    its capabilities do not claim ``multi_worker``.

    Parameters:
        engine: its ``capabilities()`` say what it serves.
        request: the launch request.
        one_worker_reason: added to the several-workers message, e.g. ``"multi-node needs mpirun"``.

    Raises:
        EngineArgumentError: saying what the engine serves instead.
    """
    from gpustack_core.types.performance import preset_refusal

    capabilities = engine.capabilities()
    category = request.deployment.category
    if category not in capabilities.categories:
        served = ", ".join(c.value for c in capabilities.categories)
        raise EngineArgumentError(
            f"engine {engine.name!r} does not serve {category.value!r} models; use one of: {served}"
        )
    refusal = preset_refusal(engine.name, capabilities, request.deployment.performance)
    if refusal is not None:
        raise EngineArgumentError(f"{refusal}; change the deployment's performance preset or its engine")
    if request.node_count > 1 and not capabilities.multi_worker:
        reason = f" ({one_worker_reason})" if one_worker_reason else ""
        raise EngineArgumentError(
            f"engine {engine.name!r} runs on one worker{reason}; place the deployment on one worker"
        )


def model_path(engine: Engine, request: LaunchRequest, what: str = "the model directory") -> str:
    """The first local model path of the request.

    Parameters:
        engine: named in the error.
        request: the launch request.
        what: what the engine serves from, for the error, e.g. ``"the GGUF file to serve"``.

    Raises:
        EngineArgumentError: the request has no model path.
    """
    if not request.model_paths:
        raise EngineArgumentError(f"engine {engine.name!r} needs the local path of {what}")
    return request.model_paths[0]


def model_directory(
    engine: Engine, request: LaunchRequest, file_suffixes: tuple[str, ...] | None = SAFETENSORS_FILES
) -> str:
    """The model's directory: the first model path, or the directory holding it when it is a file.

    Parameters:
        engine: named in the error.
        request: the launch request.
        file_suffixes: endings that make a path one of the model's files (default: ``.safetensors``
            and ``.json``); ``None``: any path with a suffix is a file.

    Raises:
        EngineArgumentError: the request has no model path.
    """
    path = model_path(engine, request)
    is_file = Path(path).suffix != "" if file_suffixes is None else path.endswith(file_suffixes)
    return str(Path(path).parent) if is_file else path


def gpu_layers(request: LaunchRequest) -> int:
    """Layers to offload, for engines of the llama.cpp family: ``0`` on the CPU alone, the claim's
    ``offloaded_layers`` for a partial offload, else ``999`` (all). RPC servers count as GPUs.

    A split over several workers' CPUs (``ResourceClaim.spans_worker_hosts``) on a head without
    GPUs offloads the claim's ``offloaded_layers`` to the subordinates' RPC servers (the last
    layers; the rest stays on the head's CPU)."""
    claim = request.placement.claim
    if claim.spans_worker_hosts and request.rpc_servers and not accelerated_devices(request):
        return claim.offloaded_layers if claim.offloaded_layers is not None else 999
    if not accelerated_devices(request) and not request.rpc_servers:
        return 0
    layers = claim.offloaded_layers if claim.strategy == "partial_offload" else None
    return layers if layers is not None else 999


def tensor_split(request: LaunchRequest) -> str | None:
    """Each GPU's share of the model over several GPUs, as ``"a,b,..."``: the bytes claimed on each
    device, or equal shares when the claim does not give one per device. ``None`` for one GPU or none.

    With ``rpc_servers`` (llama.cpp family across workers) the remote devices come first, as
    llama.cpp orders them: one share per RPC server (the bytes claimed on its worker), then the
    local GPUs; equal shares when the placement does not say what each worker holds, or when it
    is a split over workers' CPUs (the estimate splits the offloaded layers evenly)."""
    gpus = accelerated_devices(request)
    if request.rpc_servers:
        return _rpc_tensor_split(request, len(gpus))
    if len(gpus) <= 1:
        return None
    shares = [device.memory_bytes for device in request.placement.claim.devices]
    if len(shares) != len(gpus) or not all(shares):
        shares = [1] * len(gpus)
    return ",".join(str(share) for share in shares)


def make_launch_spec(
    request: LaunchRequest,
    argv: Sequence[str],
    *,
    health_path: str | None = "/health",
    served_name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    readiness_mode: Literal["http", "tcp", "process"] = "http",
    ready_timeout_s: float | None = None,
    cwd: str | None = None,
    files: Mapping[str, str] | None = None,
) -> LaunchSpec:
    """The launch spec of ``argv`` for ``request``, with what every engine's spec has in common.

    The environment is :func:`launch_env` with ``extra_env``; the port is the request's; probes go
    to :func:`probe_host`.

    Parameters:
        request: the launch request.
        argv: the program and its arguments.
        health_path: the HTTP path of readiness (2 s timeout) and health (5 s timeout); ``None``
            leaves both probes at their defaults (they are not used in the ``tcp`` and ``process``
            readiness modes).
        served_name: the model name the engine answers to; default: :func:`served_model_name`.
        extra_env: the plugin's environment variables (the deployment's ``env`` still wins).
        readiness_mode: ``http``, ``tcp`` or ``process`` (see ``LaunchSpec.readiness_mode``).
        ready_timeout_s: seconds to become ready; default: ``LaunchSpec``'s.
        cwd: the working directory; default: the worker's.
        files: text files to write before starting (path -> content).

    Returns:
        The launch spec.
    """
    from gpustack_core.types.engines import HttpProbe, LaunchSpec

    optional: dict[str, object] = {}
    if health_path is not None:
        optional["readiness"] = HttpProbe(path=health_path)
        optional["health"] = HttpProbe(path=health_path, timeout_s=5.0)
    if ready_timeout_s is not None:
        optional["ready_timeout_s"] = ready_timeout_s
    return LaunchSpec.model_validate(
        {
            "argv": tuple(argv),
            "env": launch_env(request, **(extra_env or {})),
            "cwd": cwd,
            "port": request.port,
            "probe_host": probe_host(request),
            "served_model_name": served_name if served_name is not None else served_model_name(request),
            "readiness_mode": readiness_mode,
            "files": dict(files or {}),
            **optional,
        }
    )


def _rpc_tensor_split(request: LaunchRequest, local_gpus: int) -> str | None:
    placement = request.placement
    count = len(request.rpc_servers) + local_gpus
    if count <= 1:
        return None
    claims = placement.claim.devices
    if placement.claim.spans_worker_hosts and not local_gpus:  # as the estimate split them
        return ",".join("1" for _ in request.rpc_servers)
    by_worker: dict[str, int] = {}
    if len(claims) == len(placement.devices):
        for ref, claim in zip(placement.devices, claims, strict=True):
            by_worker[ref.worker] = by_worker.get(ref.worker, 0) + claim.memory_bytes
    remote = [by_worker.get(w, 0) for w in placement.subordinate_workers[: len(request.rpc_servers)]]
    local = [
        claim.memory_bytes
        for ref, claim in zip(placement.devices, claims, strict=False)
        if ref.worker == placement.worker
    ]
    shares = [*remote, *local]
    if len(shares) != count or not all(shares):
        shares = [1] * count
    return ",".join(str(share) for share in shares)
