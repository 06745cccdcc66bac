"""Small pieces every engine plugin's ``launch_spec`` needs."""

from __future__ import annotations

from gpustack_core.types import Device, LaunchRequest

__all__ = ["accelerated_devices", "launch_env", "probe_host", "served_model_name"]


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
