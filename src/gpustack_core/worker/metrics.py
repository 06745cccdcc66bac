"""A worker's Prometheus metrics: its devices, its engine processes, and the engines' own metrics.

``GET /metrics`` on the worker API (no credentials, like the server's) answers, in the
Prometheus text format:

========================================================  ==========================================
``gpustack_worker_device_memory_total_bytes``              labels ``worker, device, vendor, name``
``gpustack_worker_device_memory_used_bytes``               (when the vendor tool reports it)
``gpustack_worker_device_utilization_ratio``               busy fraction 0..1 (when reported)
``gpustack_worker_device_temperature_celsius``             (when reported)
``gpustack_worker_device_power_watts``                     (when the plugin reports ``power_watts`` in
                                                           the device's ``extra``)
``gpustack_worker_engine_up``                              1 when ready; labels ``worker, instance,
                                                           model``
``gpustack_worker_engine_state``                           1 for the process's current state; labels
                                                           ``worker, instance, model, state``
``gpustack_worker_engine_restarts``                        restarts of the engine process
``gpustack_worker_engine_scrape_ok``                       1 when the engine's own ``/metrics`` answered
========================================================  ==========================================

followed by every ready engine's own metrics (vLLM ``vllm:*``, SGLang ``sglang:*``, llama.cpp
``llamacpp:*``), scraped from ``http://<probe host>:<port>/metrics`` with the labels ``worker``,
``instance`` and ``model`` added, so one scrape of a worker covers its engines. Families of the
same name from several engines are merged into one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import anyio
import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gpustack_core.supervisor import ProcessStatus
from gpustack_core.types import Device

__all__ = ["ENGINE_STATES", "EngineTarget", "render_worker_metrics", "scrape_engines"]

#: Process states reported by ``gpustack_worker_engine_state``.
ENGINE_STATES = ("starting", "ready", "unhealthy", "restarting", "crashed", "failed", "stopped")


@dataclass(frozen=True)
class EngineTarget:
    """One engine process: its instance id, model name, state, restarts and metrics URL."""

    instance: str
    model: str
    status: ProcessStatus
    metrics_url: str | None


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _device_families(worker: str, devices: Sequence[Device]) -> list[Metric]:
    labels = ["worker", "device", "vendor", "name"]
    p = "gpustack_worker_device_"
    total = GaugeMetricFamily(p + "memory_total_bytes", "Device memory size.", labels=labels)
    used = GaugeMetricFamily(p + "memory_used_bytes", "Device memory in use.", labels=labels)
    util = GaugeMetricFamily(p + "utilization_ratio", "Device busy fraction (0..1).", labels=labels)
    temp = GaugeMetricFamily(p + "temperature_celsius", "Device temperature.", labels=labels)
    power = GaugeMetricFamily(p + "power_watts", "Device power draw.", labels=labels)
    for d in devices:
        values = [worker, f"{d.accelerator}:{d.index}", d.vendor, d.name]
        total.add_metric(values, d.memory_total_bytes)
        if d.memory_used_bytes is not None:
            used.add_metric(values, d.memory_used_bytes)
        if d.utilization_percent is not None:
            util.add_metric(values, d.utilization_percent / 100.0)
        if d.temperature_celsius is not None:
            temp.add_metric(values, d.temperature_celsius)
        watts = d.extra.get("power_watts")
        if watts is not None:
            with contextlib.suppress(ValueError):
                power.add_metric(values, float(watts))
    return [total, used, util, temp, power]


def _engine_families(
    worker: str, targets: Sequence[EngineTarget], scraped: Mapping[str, bool]
) -> list[Metric]:
    p = "gpustack_worker_engine_"
    labels = ["worker", "instance", "model"]
    up = GaugeMetricFamily(p + "up", "1 when the engine process is ready.", labels=labels)
    state = GaugeMetricFamily(p + "state", "1 for the engine process's state.", labels=[*labels, "state"])
    restarts = GaugeMetricFamily(p + "restarts", "Restarts of the engine process.", labels=labels)
    scrape = GaugeMetricFamily(p + "scrape_ok", "1 when the engine's /metrics answered.", labels=labels)
    for t in targets:
        values = [worker, t.instance, t.model]
        up.add_metric(values, 1.0 if t.status.state == "ready" else 0.0)
        for name in ENGINE_STATES:
            state.add_metric([*values, name], 1.0 if t.status.state == name else 0.0)
        restarts.add_metric(values, t.status.restarts)
        if t.instance in scraped:
            scrape.add_metric(values, 1.0 if scraped[t.instance] else 0.0)
    return [up, state, restarts, scrape]


def _relabelled(texts: Mapping[EngineTarget, str], worker: str) -> list[Metric]:
    merged: dict[str, Metric] = {}
    for target, text in texts.items():
        extra = {"worker": worker, "instance": target.instance, "model": target.model}
        for family in text_string_to_metric_families(text):
            out = merged.get(family.name)
            if out is None:
                out = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for s in family.samples:
                out.add_sample(s.name, {**s.labels, **extra}, s.value, s.timestamp, s.exemplar)
    return list(merged.values())


async def scrape_engines(
    targets: Sequence[EngineTarget], client: httpx.AsyncClient, timeout_s: float = 3.0
) -> dict[EngineTarget, str | None]:
    """Each ready engine's own metrics text (``None`` when it did not answer), scraped concurrently."""
    results: dict[EngineTarget, str | None] = {}

    async def one(target: EngineTarget) -> None:
        assert target.metrics_url is not None
        try:
            with anyio.fail_after(timeout_s):
                response = await client.get(target.metrics_url)
            results[target] = response.text if response.status_code == 200 else None
        except (httpx.HTTPError, TimeoutError):
            results[target] = None

    async with anyio.create_task_group() as group:
        for target in targets:
            if target.metrics_url is not None and target.status.state == "ready":
                group.start_soon(one, target)
    return results


def render_worker_metrics(
    worker: str,
    devices: Sequence[Device],
    targets: Sequence[EngineTarget],
    engine_texts: Mapping[EngineTarget, str | None],
) -> bytes:
    """The worker's metrics (see the module docstring) in the Prometheus text format.

    An engine whose text does not parse is reported with ``scrape_ok`` 0 and left out.
    """
    scraped: dict[str, bool] = {}
    usable: dict[EngineTarget, str] = {}
    for target, text in engine_texts.items():
        ok = text is not None
        if text is not None:
            try:
                _relabelled({target: text}, worker)
            except ValueError:
                ok = False
            else:
                usable[target] = text
        scraped[target.instance] = ok
    families = [
        *_device_families(worker, devices),
        *_engine_families(worker, targets, scraped),
        *_relabelled(usable, worker),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
