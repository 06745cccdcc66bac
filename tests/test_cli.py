"""The command line: --version, plugins, devices."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gpustack_core import __version__
from gpustack_core.cli import build_app


def test_version() -> None:
    result = CliRunner().invoke(build_app(), ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"gpustack-core {__version__}"


def test_plugins_json_lists_builtins_as_ok(clean_plugin_env: None) -> None:
    result = CliRunner().invoke(build_app(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert records, "no plugins found"
    for record in records:
        assert record["status"] == "ok", record
        assert record["distribution"].startswith("gpustack-core"), record
    assert {"cpu", "local"} <= {r["name"] for r in records}


def test_plugins_table_and_strict_when_all_ok(clean_plugin_env: None) -> None:
    result = CliRunner().invoke(build_app(), ["plugins", "--strict"])
    assert result.exit_code == 0, result.output
    assert "cpu" in result.output
    assert "local" in result.output
    assert result.output.count("│ ok ") >= 2, result.output


def test_devices_json_shows_the_cpu(clean_plugin_env: None) -> None:
    result = CliRunner().invoke(build_app(), ["devices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cpu = [d for d in data["devices"] if d["accelerator"] == "cpu"]
    assert cpu
    assert cpu[0]["memory_total_bytes"] > 0
    assert any(r["accelerator"] == "cpu" and r["device_count"] >= 1 for r in data["reports"])
