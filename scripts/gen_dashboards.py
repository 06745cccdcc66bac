"""Generate the Grafana dashboards in deploy/grafana/ (cluster, GPUs, models, usage).

Each dashboard is Grafana's JSON model (schemaVersion 39) with a Prometheus data source variable,
so it imports into any Grafana: Dashboards -> New -> Import. ``--check`` fails when the committed
files differ from what this script writes (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel(
    pid: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int, kind: str = "timeseries"
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _dashboard(uid: str, title: str, panels: list[tuple[str, list[tuple[str, str]], str]]) -> dict[str, Any]:
    built = []
    for n, (ptitle, exprs, unit) in enumerate(panels):
        kind = "stat" if unit == "stat" else "timeseries"
        built.append(
            _panel(n + 1, ptitle, exprs, "none" if unit == "stat" else unit, (n % 2) * 12, (n // 2) * 8, kind)
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["gpustack"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": built,
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards by file name."""
    return {
        "cluster.json": _dashboard(
            "gpustack-cluster",
            "gpustack-core: cluster",
            [
                ("Instances by state", [("sum by (state) (gpustack_instances)", "{{state}}")], "stat"),
                ("Worker heartbeat age", [("gpustack_worker_heartbeat_age_seconds", "{{worker}}")], "s"),
                (
                    "Engines not ready",
                    [("sum by (worker) (1 - gpustack_worker_engine_up)", "{{worker}}")],
                    "short",
                ),
                (
                    "Engine restarts (15 min)",
                    [
                        (
                            "max_over_time(gpustack_worker_engine_restarts[15m])"
                            " - min_over_time(gpustack_worker_engine_restarts[15m])",
                            "{{model}} {{instance}}",
                        )
                    ],
                    "short",
                ),
                ("Workers scraped", [('up{job="gpustack-workers"}', "{{instance}}")], "short"),
                (
                    "Engine metrics scraped",
                    [("gpustack_worker_engine_scrape_ok", "{{model}} {{instance}}")],
                    "short",
                ),
            ],
        ),
        "gpus.json": _dashboard(
            "gpustack-gpus",
            "gpustack-core: GPUs",
            [
                (
                    "Memory used",
                    [("gpustack_worker_device_memory_used_bytes", "{{worker}} {{device}}")],
                    "bytes",
                ),
                (
                    "Memory used (ratio)",
                    [("gpustack:device_memory_used:ratio", "{{worker}} {{device}}")],
                    "percentunit",
                ),
                (
                    "Utilisation",
                    [("gpustack_worker_device_utilization_ratio", "{{worker}} {{device}}")],
                    "percentunit",
                ),
                (
                    "Temperature",
                    [("gpustack_worker_device_temperature_celsius", "{{worker}} {{device}}")],
                    "celsius",
                ),
                ("Power", [("gpustack_worker_device_power_watts", "{{worker}} {{device}}")], "watt"),
                (
                    "Memory size",
                    [("gpustack_worker_device_memory_total_bytes", "{{worker}} {{device}}")],
                    "bytes",
                ),
            ],
        ),
        "models.json": _dashboard(
            "gpustack-models",
            "gpustack-core: models",
            [
                (
                    "Requests by status",
                    [("gpustack:gateway_requests:rate5m", "{{model}} {{status}}")],
                    "reqps",
                ),
                ("Error ratio (5xx)", [("gpustack:gateway_error_ratio:rate5m", "{{model}}")], "percentunit"),
                (
                    "Latency p50 / p95",
                    [
                        (
                            "histogram_quantile(0.5, sum by (le, model) "
                            "(rate(gpustack_gateway_request_duration_seconds_bucket[5m])))",
                            "p50 {{model}}",
                        ),
                        (
                            "histogram_quantile(0.95, sum by (le, model) "
                            "(rate(gpustack_gateway_request_duration_seconds_bucket[5m])))",
                            "p95 {{model}}",
                        ),
                    ],
                    "s",
                ),
                (
                    "Time to first token p95",
                    [
                        (
                            "histogram_quantile(0.95, sum by (le, model) "
                            "(rate(gpustack_gateway_time_to_first_token_seconds_bucket[5m])))",
                            "{{model}}",
                        )
                    ],
                    "s",
                ),
                ("Requests in flight", [("gpustack_gateway_requests_in_flight", "{{model}}")], "short"),
                (
                    "Upstream retries",
                    [("rate(gpustack_gateway_upstream_retries_total[5m])", "{{model}}")],
                    "ops",
                ),
            ],
        ),
        "usage.json": _dashboard(
            "gpustack-usage",
            "gpustack-core: usage",
            [
                (
                    "Prompt tokens / s",
                    [("sum by (model) (rate(gpustack_gateway_prompt_tokens_total[5m]))", "{{model}}")],
                    "short",
                ),
                (
                    "Completion tokens / s",
                    [("sum by (model) (rate(gpustack_gateway_completion_tokens_total[5m]))", "{{model}}")],
                    "short",
                ),
                (
                    "Tokens today",
                    [
                        (
                            "sum by (model) (increase(gpustack_gateway_prompt_tokens_total[1d])"
                            " + increase(gpustack_gateway_completion_tokens_total[1d]))",
                            "{{model}}",
                        )
                    ],
                    "stat",
                ),
                (
                    "Requests today",
                    [("sum by (model) (increase(gpustack_gateway_requests_total[1d]))", "{{model}}")],
                    "stat",
                ),
            ],
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` compare them with the committed files."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when deploy/grafana is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, board in dashboards().items():
        text = json.dumps(board, indent=2) + "\n"
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale dashboards (run python scripts/gen_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
