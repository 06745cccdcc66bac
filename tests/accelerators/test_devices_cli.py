"""``gpustack-core devices`` with every built-in accelerator plugin installed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gpustack_core.cli.app import build_app


@pytest.mark.usefixtures("clean_plugin_env")
def test_devices_json_shows_cpu_and_one_line_per_absent_vendor() -> None:
    result = CliRunner().invoke(build_app(), ["devices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert any(d["accelerator"] == "cpu" for d in data["devices"])
    reports = {r["accelerator"]: r for r in data["reports"]}
    assert {"cpu", "cuda", "rocm", "cann", "dtk", "musa", "corex", "mlu", "metal", "metax"} <= set(reports)
    for name, report in reports.items():
        assert report["error"] is None, f"{name}: {report['error']}"
        if report["device_count"] == 0:
            assert report["diagnostic"], name
            assert "\n" not in report["diagnostic"], name


@pytest.mark.usefixtures("clean_plugin_env")
def test_devices_table_prints_diagnostics_once_prefixed() -> None:
    result = CliRunner().invoke(build_app(), ["devices"])
    assert result.exit_code == 0, result.output
    assert "cpu:0" in result.output
    assert not any(line.startswith(("rocm: rocm:", "cuda: cuda:")) for line in result.output.splitlines())
