"""The accelerator conformance suite for the ROCm plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_rocm import RocmAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestRocmRecorded(RecordedToolSuite):
    accelerator_class = RocmAccelerator
