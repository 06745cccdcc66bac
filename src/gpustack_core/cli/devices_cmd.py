"""``gpustack-core devices``: devices of this machine, from every accelerator plugin."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from gpustack_core.accelerators.detection import detect_devices
from gpustack_core.types import DetectOptions

from ._common import console, make_host, print_json

__all__ = ["register"]


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f} GiB"


def devices(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    timeout: float = typer.Option(5.0, "--tool-timeout", help="Seconds before a vendor tool is killed."),
) -> None:
    """Detect devices with every accelerator plugin; one diagnostic line per absent vendor."""
    host = make_host()
    inventory = detect_devices(host, DetectOptions(tool_timeout_s=timeout))
    if as_json:
        print_json(
            {
                "devices": [d.model_dump(mode="json") for d in inventory.devices],
                "reports": [
                    {
                        "accelerator": r.accelerator,
                        "device_count": len(r.devices),
                        "diagnostic": r.diagnostic,
                        "error": r.error,
                        "duration_s": round(r.duration_s, 6),
                    }
                    for r in inventory.reports
                ],
            }
        )
        return
    table = Table(title="devices")
    for column in ("device", "name", "vendor", "arch", "memory used / total", "cores", "util", "temp"):
        table.add_column(column)
    for d in inventory.devices:
        table.add_row(
            f"{d.accelerator}:{d.index}",
            d.name,
            d.vendor,
            d.architecture or d.compute_capability or "-",
            f"{_gib(d.memory_used_bytes)} / {_gib(d.memory_total_bytes)}",
            "-" if d.core_count is None else str(d.core_count),
            "-" if d.utilization_percent is None else f"{d.utilization_percent:.0f}%",
            "-" if d.temperature_celsius is None else f"{d.temperature_celsius:.0f} C",
        )
    out = console()
    out.print(table)
    for r in inventory.reports:
        for style, message in (("yellow", r.diagnostic), ("red", r.error)):
            if message:
                # plugin messages usually start with "<accelerator>: " already
                text = message.removeprefix(f"{r.accelerator}: ")
                out.print(f"[{style}]{r.accelerator}[/]: {escape(text)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``devices`` command."""
    app.command("devices")(devices)
