"""The accelerator conformance suite for the Metal plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_metal import MetalAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestMetalRecorded(RecordedToolSuite):
    accelerator_class = MetalAccelerator
