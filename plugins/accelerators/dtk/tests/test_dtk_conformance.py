"""The accelerator conformance suite for the DTK plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_dtk import DtkAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestDtkRecorded(RecordedToolSuite):
    accelerator_class = DtkAccelerator
