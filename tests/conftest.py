"""Shared fixtures for the core test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("GPUSTACK_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture
def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No allow/deny lists from the caller's environment."""
    monkeypatch.delenv("GPUSTACK_CORE_PLUGINS_ALLOW", raising=False)
    monkeypatch.delenv("GPUSTACK_CORE_PLUGINS_DENY", raising=False)
