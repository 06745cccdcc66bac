"""The accelerator conformance suite for the CANN plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_cann import CannAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestCannRecorded(RecordedToolSuite):
    accelerator_class = CannAccelerator
