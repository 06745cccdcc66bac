"""The accelerator conformance suite for the CoreX plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_corex import CorexAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestCorexRecorded(RecordedToolSuite):
    accelerator_class = CorexAccelerator
