"""The worker agent: registers with a server, heartbeats, and runs the instances assigned to it."""

from __future__ import annotations

__all__: list[str] = []
