"""Test helpers shipped with gpustack-core for plugin authors (needs pytest).

:mod:`gpustack_core.testing.accelerators` holds the accelerator conformance suite (and
:mod:`gpustack_core.testing.recordings` its form for plugins that read vendor tools, run on
recorded output),
:mod:`gpustack_core.testing.engines` the engine conformance suite (runs the real engine), and
:mod:`gpustack_core.testing.launch_specs` the launch-spec suite (golden specs and flag checks, no engine).
"""

from __future__ import annotations

from .accelerators import AcceleratorSuite, Capabilities, IndependentDevice, emulated_runtime_probe
from .launch_specs import LaunchSpecSuite
from .recordings import (
    ConformanceManifest,
    FakeTools,
    ManifestError,
    RecordedCall,
    RecordedToolSuite,
    Recording,
)

__all__ = [
    "AcceleratorSuite",
    "Capabilities",
    "ConformanceManifest",
    "FakeTools",
    "IndependentDevice",
    "LaunchSpecSuite",
    "ManifestError",
    "RecordedCall",
    "RecordedToolSuite",
    "Recording",
    "emulated_runtime_probe",
]
