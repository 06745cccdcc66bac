"""How another worker joins this server (admins): the command with the server URL and join token."""

from __future__ import annotations

from pydantic import BaseModel

from ._framework import ApiError, Endpoint, Request

__all__ = ["ENDPOINTS", "JoinCommand"]


class JoinCommand(BaseModel):
    """The command to run on a new worker machine."""

    server_url: str
    command: str


async def join_command(req: Request) -> JoinCommand:
    """The ``gpustack-core worker`` command line that joins a machine to this server."""
    token = req.services.worker_token
    if token is None:
        raise ApiError(
            409, f"the worker token file is missing or stale; see {req.services.config.data_dir / 'token'}"
        )
    url = str(req.raw.base_url).rstrip("/")
    return JoinCommand(server_url=url, command=f"gpustack-core worker --server-url {url} --token {token}")


ENDPOINTS = (
    Endpoint(
        "GET",
        "/worker-join-command",
        join_command,
        "the command that joins another worker",
        "workers",
        auth="admin",
        response=JoinCommand,
    ),
)
