"""The shipped Prometheus configuration, alert rules and Grafana dashboards: promtool accepts them,
the alert rules' unit tests pass, and every series they use is one gpustack-core exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gpustack_core.gateway.metrics import GatewayMetrics
from gpustack_core.supervisor import ProcessStatus
from gpustack_core.types import Device
from gpustack_core.worker.metrics import EngineTarget, render_worker_metrics

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
RULES = PROM / "rules" / "gpustack.rules.yml"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package 'prometheus')"
)


def _promtool(*args: str, cwd: Path = PROM) -> str:
    done = subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_promtool_accepts_the_scrape_config_and_rules() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in _promtool("check", "rules", str(RULES))


@needs_promtool
def test_alert_rules_fire_as_their_unit_tests_say() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "gpustack.rules.test.yml", cwd=RULES.parent)


def _exported_names() -> set[str]:
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = {f.name + suffix for f in registry.collect() for suffix in suffixes[f.type]}
    device = Device(
        accelerator="cuda", vendor="nvidia", index=0, uuid="GPU-1", name="H200",
        memory_total_bytes=100, memory_used_bytes=50, utilization_percent=10.0,
        temperature_celsius=40.0, extra={"power_watts": "300"},
    )  # fmt: skip
    target = EngineTarget("i", "m", ProcessStatus(instance_id="i", state="ready", log_path="/x"), None)
    text = render_worker_metrics("w", [device], [target], {target: ""}).decode()
    names |= {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    names |= set(re.findall(r"record: (\S+)", RULES.read_text()))
    return names


def _series_in(expr: str) -> set[str]:
    return set(re.findall(r"\bgpustack[a-zA-Z0-9_:]*\b(?![-.])", expr))


def test_every_series_in_rules_and_dashboards_is_exported() -> None:
    exported = _exported_names()
    assert "gpustack_worker_device_power_watts" in exported
    used = _series_in(RULES.read_text())
    for board in GRAFANA.glob("*.json"):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel["targets"]:
                used |= _series_in(target["expr"])
    assert used, "no series found"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_dashboards_are_generated_and_well_formed() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_dashboards.py"), "--check"], check=False
    )
    assert check.returncode == 0
    boards = sorted(p.name for p in GRAFANA.glob("*.json"))
    assert boards == ["cluster.json", "gpus.json", "models.json", "usage.json"]
    uids = set()
    for name in boards:
        board = json.loads((GRAFANA / name).read_text())
        assert {"uid", "title", "schemaVersion", "panels", "templating", "time"} <= set(board), name
        assert isinstance(board["schemaVersion"], int)
        assert board["schemaVersion"] >= 30
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["type"] in {"timeseries", "stat"}
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y"))
            assert grid["w"] > 0
            assert grid["x"] + grid["w"] <= 24
            refs = [t["refId"] for t in panel["targets"]]
            assert refs
            assert len(refs) == len(set(refs))
            assert all(t["expr"].strip() for t in panel["targets"])
    assert len(uids) == len(boards)
