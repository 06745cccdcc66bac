"""Shared by the console tests: the served application they drive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["ConsoleServer"]


@dataclass
class ConsoleServer:
    """A served application: base URL, data directory, the admin's current password and the
    llama.cpp version (the prebuilt runtime) its real deployments pin."""

    url: str
    data_dir: Path
    admin_password: str
    llama_cpp_version: str = ""

    def api_login(self, username: str = "admin", password: str | None = None) -> dict[str, str]:
        """Bearer headers of a fresh login session (for test setup through the public API)."""
        r = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": password or self.admin_password},
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}
