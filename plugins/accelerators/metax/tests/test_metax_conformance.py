"""The accelerator conformance suite for the MetaX plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_metax import MetaxAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestMetaxRecorded(RecordedToolSuite):
    accelerator_class = MetaxAccelerator
