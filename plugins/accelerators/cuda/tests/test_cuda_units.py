"""Unit tests of the CUDA plugin's parts the conformance suite does not reach: MIG, visibility,
the NVML life cycle, error messages, and the recorded NVML and nvidia-smi numbers side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gpustack_accelerator_cuda import CudaAccelerator, parse_smi_xml

from gpustack_core import DetectOptions
from gpustack_core.errors import AcceleratorNotPresent, AcceleratorOutputError
from gpustack_core.testing import FakeTools

XML = (Path(__file__).parent / "fixtures" / "nvidia-smi-q.xml").read_text()

# Synthetic, for the MIG code path only (no MIG capture exists): a GPU in MIG mode with two
# populated slots and one empty slot.
_MIG_GPU = {
    "name": "NVIDIA H200",
    "uuid": "GPU-f3d76b44-fda7-547e-b663-066d37ebc707",
    "memory": (150754820096, 644939776),
    "mig_mode": (1, 1),
    "migs": [
        {
            "name": "NVIDIA H200 MIG 1g.18gb",
            "uuid": "MIG-aaaaaaaa-0000-0000-0000-000000000001",
            "memory": (18 * 2**30, 0),
        },
        None,
        {
            "name": "NVIDIA H200 MIG 3g.71gb",
            "uuid": "MIG-aaaaaaaa-0000-0000-0000-000000000002",
            "memory": (71 * 2**30, 2**20),
        },
    ],
}


def test_mig_instances_replace_their_gpu(fake_nvml: Any) -> None:
    devices = CudaAccelerator(nvml=fake_nvml([_MIG_GPU])).detect(DetectOptions())
    assert [d.uuid for d in devices] == [
        "MIG-aaaaaaaa-0000-0000-0000-000000000001",
        "MIG-aaaaaaaa-0000-0000-0000-000000000002",
    ]
    assert [d.index for d in devices] == [0, 1]
    assert {d.parent_uuid for d in devices} == {_MIG_GPU["uuid"]}
    assert devices[1].extra["mig_index"] == "1"
    assert devices[1].extra["gpu_index"] == "0"
    env = CudaAccelerator(nvml=None).visibility_env(devices[1:])
    assert env == {"CUDA_VISIBLE_DEVICES": "MIG-aaaaaaaa-0000-0000-0000-000000000002"}


def test_nvml_is_shut_down_after_each_detection(fake_nvml: Any) -> None:
    nvml = fake_nvml()
    accelerator = CudaAccelerator(nvml=nvml)
    for _ in range(3):
        accelerator.detect(DetectOptions())
    assert nvml.open == 0


def test_empty_subset_hides_every_gpu() -> None:
    assert CudaAccelerator(nvml=None).visibility_env([]) == {"CUDA_VISIBLE_DEVICES": ""}


def test_absent_driver_gives_one_line_naming_both_sources(tmp_path: Path, fake_nvml: Any) -> None:
    options = FakeTools(tmp_path / "bin").options()
    with pytest.raises(AcceleratorNotPresent) as info:
        CudaAccelerator(nvml=fake_nvml(init_error="NVML Shared Library Not Found")).detect(options)
    message = str(info.value)
    assert "nvidia-smi not found" in message
    assert "NVML Shared Library Not Found" in message
    assert "\n" not in message


def test_nvidia_smi_failing_means_not_present(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path / "bin")
    tools.add(
        "nvidia-smi",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
        exit_code=9,
    )
    with pytest.raises(AcceleratorNotPresent, match="exited with status 9: NVIDIA-SMI has failed"):
        CudaAccelerator(nvml=None).detect(tools.options())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<html/>", "root element is <html>"),
        ("<nvidia_smi_log><driver_version>1</driver_version></nvidia_smi_log>", "no <gpu> element"),
        ("<nvidia_smi_log><gpu><uuid>GPU-1</uuid></gpu></nvidia_smi_log>", "lacks uuid"),
        (
            XML.replace("<total>143771 MiB</total>", "<total>lots</total>", 1),
            "fb_memory_usage of GPU-f3d76b44",
        ),
    ],
    ids=["not-nvidia-smi", "no-gpu", "gpu-without-fields", "bad-total"],
)
def test_garbled_xml_names_tool_and_part(text: str, fragment: str) -> None:
    with pytest.raises(AcceleratorOutputError) as info:
        parse_smi_xml(text, "cuda", "nvidia")
    assert "nvidia-smi -q -x" in str(info.value)
    assert fragment in str(info.value)


def test_recorded_nvml_and_smi_agree_on_the_h200(fake_nvml: Any) -> None:
    """The two recorded sources give the same device; used memory differs only by rounding to MiB."""
    nvml = CudaAccelerator(nvml=fake_nvml(), smi_fallback=False).detect(DetectOptions())[0]
    smi = parse_smi_xml(XML, "cuda", "nvidia")[0]
    assert (nvml.uuid, nvml.name, nvml.memory_total_bytes) == (smi.uuid, smi.name, smi.memory_total_bytes)
    assert nvml.memory_total_bytes == 150754820096 == 143771 * 2**20
    assert nvml.memory_used_bytes == 644939776
    assert smi.memory_used_bytes == (0 + 616) * 2**20
    assert nvml.compute_capability == "9.0"
    assert nvml.runtime_version == "13.0"
    assert nvml.driver_version == smi.driver_version == "580.159.04"
    assert smi.architecture == "hopper"
    assert smi.temperature_celsius == 40.0


def test_process_memory_sums_nvml_compute_processes_of_the_given_pids(fake_nvml: Any, h200: Any) -> None:
    import os

    me, parent = os.getpid(), os.getppid()
    gpu = {**h200, "processes": [(me, 3 * 2**30), (parent, 2**30), (999_999_999, 5 * 2**30)]}
    accelerator = CudaAccelerator(nvml=fake_nvml([gpu]))
    [device] = accelerator.detect(DetectOptions())
    assert accelerator.process_memory([device], {me}, DetectOptions()) == {0: 3 * 2**30}
    assert accelerator.process_memory([device], {me, parent}, DetectOptions()) == {0: 4 * 2**30}
    assert accelerator.process_memory([device], set(), DetectOptions()) == {0: 0}


def test_process_memory_is_unknown_when_nvml_cannot_tell(fake_nvml: Any, h200: Any) -> None:
    import os

    withheld = {**h200, "processes": [(os.getpid(), None)]}
    device = CudaAccelerator(nvml=fake_nvml([withheld])).detect(DetectOptions())[0]
    assert (
        CudaAccelerator(nvml=fake_nvml([withheld])).process_memory([device], {os.getpid()}, DetectOptions())
        is None
    )
    # every pid NVML lists is foreign to this pid namespace (a container): no measurement
    foreign = {**h200, "processes": [(999_999_998, 2**30)]}
    assert CudaAccelerator(nvml=fake_nvml([foreign])).process_memory([device], {1}, DetectOptions()) is None
    assert CudaAccelerator(nvml=None).process_memory([device], {1}, DetectOptions()) is None
