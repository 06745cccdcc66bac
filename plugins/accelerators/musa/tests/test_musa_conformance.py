"""The accelerator conformance suite for the MUSA plugin,
on a RECONSTRUCTED mthreads-gmi -q output (see fixtures/SOURCE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpustack_accelerator_musa import MusaAccelerator, parse_gmi_query

from gpustack_core import Accelerator
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

TEXT = (Path(__file__).parent / "fixtures" / "mthreads-gmi-q.txt").read_text()


def _tools(directory: Path, text: str = TEXT, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("mthreads-gmi", {"-q": text}, **kwargs)  # type: ignore[arg-type]
    return tools


class TestMusaReconstructed(FakeToolSuite):
    """Two GPUs in a hand-written mthreads-gmi -q layout."""

    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second Moore Threads tool was recorded",
    )

    visibility_variable = "MUSA_VISIBLE_DEVICES"
    garbled_tool = "mthreads-gmi"
    garbled_output = TEXT.replace("49152MiB", "big")

    def make_accelerator(self) -> Accelerator:
        return MusaAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, TEXT if output is None else output, **behaviour)


def test_parsed_fields(tmp_path: Path) -> None:
    devices = MusaAccelerator().detect(_tools(tmp_path / "bin").options())
    assert [d.pci_bus_id for d in devices] == ["00000000:3B:00.0", "00000000:5E:00.0"]
    assert devices[0].memory_total_bytes == 49152 * 2**20
    assert devices[0].memory_used_bytes == 1234 * 2**20
    assert devices[0].temperature_celsius == 41.0
    assert devices[0].driver_version == "2.7.0"
    assert devices[0].extra == {"mtbios": "3.4.3", "device_id": "0x0301"}


def test_device_id_nested_under_pci() -> None:
    """The JSON mode puts ``Device ID`` inside ``PCI`` (see fixtures/SOURCE.md); read it there too."""
    nested = TEXT.replace(
        "    Device ID                           : 0x0301\n",
        "    PCI\n        Device ID                       : 0x0301\n",
    )
    assert nested != TEXT
    devices = parse_gmi_query(nested, "musa", "mthreads")
    assert [d.extra.get("device_id") for d in devices] == ["0x0301", "0x0301"]
