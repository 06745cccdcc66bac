from __future__ import annotations

from gpustack_core import PluginHost, detect_devices


def test_builtin_plugins_load_and_cpu_is_detected(clean_plugin_env: None) -> None:
    host = PluginHost()
    statuses = {(r.area, r.name): r.status for r in host.plugins()}
    assert statuses[("accelerators", "cpu")] == "ok"
    assert statuses[("sources", "local")] == "ok"
    devices = detect_devices(host).devices
    assert any(d.accelerator == "cpu" and d.memory_total_bytes > 0 for d in devices)
