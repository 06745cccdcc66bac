"""The MLU plugin also accepts cnmon's report on stdout (older cnmon releases print it)."""

from __future__ import annotations

from pathlib import Path

from gpustack_accelerator_mlu import MluAccelerator

from gpustack_core.testing import FakeTools

REPORT = (Path(__file__).parent / "fixtures" / "cnmon_info.json").read_text()


def test_report_on_stdout_is_accepted(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path / "bin")
    tools.add("cnmon", {"info -e -m -u -j": REPORT})
    devices = MluAccelerator().detect(tools.options())
    assert [d.uuid for d in devices] == [
        "MLU-00000000-0000-0000-0000-000000000000",
        "MLU-00000000-0000-0000-0000-000000000001",
    ]
    assert devices[1].memory_used_bytes == 24576 * 2**20
    assert devices[1].utilization_percent == 63.0
