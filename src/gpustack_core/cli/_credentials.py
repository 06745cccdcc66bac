"""The per-user credentials file of ``gpustack-core login``: one session token per server URL.

``$GPUSTACK_CORE_CONFIG_DIR/credentials.json`` (default ``$XDG_CONFIG_HOME/gpustack-core``, else
``~/.config/gpustack-core``), mode 0600 in a 0700 directory, written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_DIR_ENV", "credentials_path", "forget_token", "load_token", "save_token"]

#: Overrides the directory of the credentials file.
CONFIG_DIR_ENV = "GPUSTACK_CORE_CONFIG_DIR"


def credentials_path() -> Path:
    """Where tokens are kept."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser() / "credentials.json"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "gpustack-core" / "credentials.json"


def _key(server_url: str) -> str:
    return server_url.rstrip("/")


def _read() -> dict[str, Any]:
    try:
        data = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_token(server_url: str, token: str, username: str, expires_at: str | None) -> Path:
    """Keep ``token`` for ``server_url``; returns the file's path."""
    data = _read()
    servers = data.setdefault("servers", {})
    servers[_key(server_url)] = {"token": token, "username": username, "expires_at": expires_at}
    _write(data)
    return credentials_path()


def load_token(server_url: str) -> str | None:
    """The token kept for ``server_url``, if any."""
    entry = _read().get("servers", {}).get(_key(server_url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) else None


def forget_token(server_url: str) -> bool:
    """Remove the token of ``server_url``; whether there was one."""
    data = _read()
    servers = data.get("servers", {})
    if _key(server_url) not in servers:
        return False
    del servers[_key(server_url)]
    _write(data)
    return True
