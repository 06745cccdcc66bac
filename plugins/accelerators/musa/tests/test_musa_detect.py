"""What the MUSA plugin reads from the reconstructed mthreads-gmi -q output, field by field."""

from __future__ import annotations

from pathlib import Path

from gpustack_accelerator_musa import MusaAccelerator, parse_gmi_query

from gpustack_core.testing import ConformanceManifest

RECORDINGS = ConformanceManifest.beside(__file__)
TEXT = (Path(__file__).parent / "fixtures" / "mthreads-gmi-q.txt").read_text()


def test_parsed_fields(tmp_path: Path) -> None:
    options = RECORDINGS.recording("reconstructed-2-gpus").fake_tools(tmp_path).options()
    devices = MusaAccelerator().detect(options)
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
