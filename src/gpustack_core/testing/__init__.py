"""Test helpers shipped with gpustack-core for plugin authors (needs pytest).

:mod:`gpustack_core.testing.accelerators` holds the accelerator conformance suite,
:mod:`gpustack_core.testing.engines` the engine conformance suite.
"""

from __future__ import annotations

from .accelerators import (
    AcceleratorSuite,
    Capabilities,
    FakeTools,
    IndependentDevice,
    emulated_runtime_probe,
)

__all__ = ["AcceleratorSuite", "Capabilities", "FakeTools", "IndependentDevice", "emulated_runtime_probe"]
