"""The accelerator conformance suite for the MLU plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_mlu import MluAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestMluReconstructed(RecordedToolSuite):
    accelerator_class = MluAccelerator
