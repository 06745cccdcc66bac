"""A deployment whose engine version is not installed yet goes through ``installing`` (distinct from
``downloading``) with the install's phase and last log lines in the REST API and ``manage instances``,
and every transition is logged at INFO with its reason."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from server_helpers import Running, fast_config, start_app

pytestmark = pytest.mark.anyio


async def test_engine_install_is_its_own_state_with_progress(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GPUSTACK_CORE_ENGINES_DIR", str(tmp_path / "engines"))
    caplog.set_level(logging.INFO, logger="gpustack_core")
    async for server in start_app(fast_config(tmp_path / "data")):
        seen = await _deploy_and_watch(server, tiny_model)
        _check(seen, caplog)


async def _deploy_and_watch(server: Running, model: Path) -> list[dict[str, Any]]:
    """Deploy on a version of the fake engine that is not installed; every poll until running."""
    seen: list[dict[str, Any]] = []
    body = {"name": "fresh", "model": f"local:{model}", "engine": "fake", "engine_version": "2.0"}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    async def running() -> bool:
        items = (await server.api("GET", "/instances", params={"deployment": "fresh"})).json()["items"]
        if items:
            seen.append(items[0])
            assert items[0]["state"] != "error", items[0]["message"]
        return bool(items) and items[0]["state"] == "running"

    await server.wait_for(running, timeout=60)
    return seen


def _check(seen: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    states = [i["state"] for i in seen]
    assert "installing" in states
    order = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert order.index("installing") < order.index("running")
    installing = [i for i in seen if i["state"] == "installing"]
    assert all(i["progress"] is not None for i in installing)
    assert "installing fake 2.0" in installing[0]["message"]
    phases = {i["progress"]["phase"] for i in installing}
    assert phases & {"building part-a", "building part-b"}, phases
    tails = [line for i in installing for line in i["progress"]["log_tail"]]
    assert any(line.startswith("compiling part-") for line in tails), tails
    assert seen[-1]["progress"] is None  # cleared once running
    transitions = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    for change in ("pending -> scheduled", "scheduled -> downloading", "downloading -> installing",
                   "installing -> starting", "starting -> running"):  # fmt: skip
        assert any(change in line for line in transitions), (change, transitions)
    assert all(r.levelno == logging.INFO for r in caplog.records if " -> " in r.getMessage())


def test_manage_instances_prints_progress() -> None:
    from gpustack_core.cli.manage_cmd import _progress_lines

    download = {"downloaded_bytes": 3 * 2**20, "total_bytes": 12 * 2**20, "percent": 25.0}
    download |= {"bytes_per_second": 2**20, "eta_seconds": 9.0}
    assert _progress_lines(download) == ["downloaded 3.0 / 12.0 MiB (25.0%), 1.0 MiB/s, ETA 9 s"]
    assert _progress_lines({"downloaded_bytes": 2**20, "total_bytes": None}) == ["downloaded 1.0 MiB"]
    install = {"phase": "pip install xllamacpp==1", "log_tail": ["Collecting xllamacpp==1", "Installing"]}
    assert _progress_lines(install) == [
        "phase: pip install xllamacpp==1",
        "| Collecting xllamacpp==1",
        "| Installing",
    ]
    assert _progress_lines(None) == []
