"""Test helpers shipped with gpustack-core for plugin authors (needs pytest).

:mod:`gpustack_core.testing.accelerators` holds the accelerator conformance suite,
:mod:`gpustack_core.testing.engines` the engine conformance suite (runs the real engine), and
:mod:`gpustack_core.testing.launch_specs` the launch-spec suite (golden specs and flag checks, no engine).
"""

from __future__ import annotations

from .accelerators import (
    AcceleratorSuite,
    Capabilities,
    FakeTools,
    FakeToolSuite,
    IndependentDevice,
    emulated_runtime_probe,
)
from .launch_specs import LaunchSpecSuite

__all__ = [
    "AcceleratorSuite",
    "Capabilities",
    "FakeToolSuite",
    "FakeTools",
    "IndependentDevice",
    "LaunchSpecSuite",
    "emulated_runtime_probe",
]
