"""The accelerator conformance suite for the MUSA plugin, on the recordings in fixtures/conformance.toml."""

from gpustack_accelerator_musa import MusaAccelerator

from gpustack_core.testing import RecordedToolSuite


class TestMusaReconstructed(RecordedToolSuite):
    accelerator_class = MusaAccelerator
