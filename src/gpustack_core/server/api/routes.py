"""Every endpoint of the management API, in documentation order."""

from __future__ import annotations

from . import (
    auth_routes,
    catalog,
    deployments,
    engines,
    evaluations,
    governance,
    instance_events,
    instance_logs,
    join,
    resolutions,
    sessions,
    sso_routes,
    usage,
    users,
    workers,
)
from ._framework import Endpoint

__all__ = ["all_endpoints"]


def all_endpoints() -> tuple[Endpoint, ...]:
    """The endpoints of every resource module."""
    return (
        *auth_routes.ENDPOINTS,
        *sessions.ENDPOINTS,
        *sso_routes.ENDPOINTS,
        *users.ENDPOINTS,
        *workers.ENDPOINTS,
        *join.ENDPOINTS,
        *deployments.ENDPOINTS,
        *evaluations.ENDPOINTS,
        *catalog.ENDPOINTS,
        *resolutions.ENDPOINTS,
        *instance_events.ENDPOINTS,
        *instance_logs.ENDPOINTS,
        *engines.ENDPOINTS,
        *usage.ENDPOINTS,
        *governance.ENDPOINTS,
    )
