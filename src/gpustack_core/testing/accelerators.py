"""The accelerator conformance suite: every accelerator plugin runs it.

A plugin that reads vendor tools adopts it through
:class:`~gpustack_core.testing.recordings.RecordedToolSuite`: a subclass naming the accelerator,
with capabilities and recordings declared in ``fixtures/conformance.toml``. A suite that runs on
the machine itself (the CPU, real GPUs) subclasses :class:`AcceleratorSuite` directly::

    from gpustack_core.testing import AcceleratorSuite, Capabilities

    class TestMyAccelerator(AcceleratorSuite):
        accelerator_class = MyAccelerator
        capabilities = Capabilities(has_devices=True, has_temperature="the tool has no sensor")

Capabilities open, close or skip tests: ``True`` opens the tests that need it, ``False`` or a string
(the reason) closes them; a closed test is skipped with the reason. Fixtures a test needs and the
author has not provided raise ``NotImplementedError`` naming the fixture, so a declared capability
without its fixture fails loudly instead of passing quietly.

Fixtures the suite uses (override them as pytest fixtures on the subclass):

``accelerator``           the :class:`~gpustack_core.contracts.Accelerator` under test (default:
                          :meth:`AcceleratorSuite.make_accelerator`, which calls ``accelerator_class``)
``detect_options``        :class:`~gpustack_core.types.DetectOptions` for it (default: the defaults)
``independent_views``     ``{source name: [IndependentDevice, ...]}``: another view of the same devices
                          (``independent_source``)
``child_probe``           ``callable(env) -> list[str]``: uuids a child process started with ``env``
                          sees, in the child's order (``visibility_restricts``)
``absent_setup``          ``(accelerator, options)`` where the vendor is absent (``absent_vendor``)
``hung_setup``            ``(accelerator, options)`` whose tool hangs (``tool_timeout``)
``garbled_setup``         ``(accelerator, options, tool name)`` whose tool prints garbage (``garbled_output``)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from gpustack_core.contracts import Accelerator
from gpustack_core.errors import AcceleratorNotPresent, AcceleratorOutputError, AcceleratorToolTimeout
from gpustack_core.types import DetectOptions, Device, RuntimeOverhead, RuntimeWorkload

__all__ = [
    "AcceleratorSuite",
    "Capabilities",
    "IndependentDevice",
    "emulated_runtime_probe",
    "requires",
]

Capability = bool | str
_F = TypeVar("_F", bound=Callable[..., None])


@dataclass(frozen=True)
class Capabilities:
    """What a plugin under test can do. ``True`` opens a test group; ``False`` or a reason closes it."""

    #: detection finds at least one device in the test setup
    has_devices: Capability = True
    #: another source (a second tool, the framework) sees the same devices: ``independent_views``
    independent_source: Capability = False
    #: ``visibility_env`` restricts a child process: ``child_probe``
    visibility_restricts: Capability = False
    #: devices report a temperature
    has_temperature: Capability = False
    #: devices report utilization
    has_utilization: Capability = False
    #: an absent vendor gives zero devices or AcceleratorNotPresent: ``absent_setup``
    absent_vendor: Capability = False
    #: a hung vendor tool is killed in time: ``hung_setup``
    tool_timeout: Capability = False
    #: garbled tool output raises AcceleratorOutputError naming the tool: ``garbled_setup``
    garbled_output: Capability = False
    #: repeated detection leaks no processes, descriptors or memory (needs /proc)
    leak_free: Capability = True

    def reason_closed(self, name: str) -> str | None:
        """``None`` when ``name`` is open, else the reason it is closed."""
        value = getattr(self, name)
        if value is True:
            return None
        if isinstance(value, str) and value:
            return value
        return f"capability {name!r} not declared by this plugin's suite subclass"

    @classmethod
    def names(cls) -> list[str]:
        """Every capability name."""
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class IndependentDevice:
    """One device as an independent source sees it; ``None`` where the source cannot tell."""

    uuid: str
    name: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None

    @classmethod
    def of(cls, device: Device) -> IndependentDevice:
        """``device`` as another source (another tool, another backend of the plugin) detected it."""
        return cls(device.uuid, device.name, device.memory_total_bytes, device.memory_used_bytes)


_PROBE = textwrap.dedent(
    """\
    import json, os, sys
    variable, devices = sys.argv[1], json.loads(sys.argv[2])
    value = os.environ.get(variable)
    if value is None:
        print(json.dumps([d[1] for d in devices])); sys.exit(0)
    seen = []
    for token in [t.strip() for t in value.split(",")] if value.strip() else []:
        match = [d for d in devices if token == str(d[0]) or (len(token) > 3 and d[1].startswith(token))]
        if len(match) != 1:
            break  # the runtimes stop at the first token they cannot resolve
        if match[0][1] not in seen:
            seen.append(match[0][1])
    print(json.dumps(seen))
    """
)


def emulated_runtime_probe(
    variable: str, devices: Sequence[Device], extra_env: dict[str, str] | None = None
) -> Callable[[dict[str, str]], list[str]]:
    """A ``child_probe`` for machines without the hardware: a child Python process that applies
    the documented rules of a vendor runtime's visibility variable to ``devices``.

    The rules (CUDA's, which ROCm, MUSA, MLU and Ascend copy): variable unset -> every device;
    set but empty -> none; otherwise a comma-separated list of indices or uuids (a uuid prefix
    of more than three characters matches), in the order given, stopping at the first token
    that matches no device or several. This checks what a plugin can check without hardware:
    that the variable it sets selects exactly the chosen devices, in order, in a real child
    process. It is not a substitute for the run on real hardware (use ``torch`` there).
    """
    table = json.dumps([[d.index, d.uuid] for d in devices])

    def probe(env: dict[str, str]) -> list[str]:
        child_env = {k: v for k, v in os.environ.items() if k != variable}
        child_env.update(extra_env or {})
        child_env.update(env)
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, variable, table],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result: list[str] = json.loads(out.stdout)
        return result

    return probe


def _child_pids() -> set[int]:
    """Live (non-zombie-reaped) children of this process, from /proc."""
    me = os.getpid()
    children: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        after = text.rsplit(")", 1)[-1].split()
        if len(after) > 1 and int(after[1]) == me:
            children.add(int(entry))
    return children


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def requires(*capabilities: str) -> Callable[[_F], _F]:
    """Mark a suite test as needing ``capabilities``; it is skipped, with the reason, when one is closed."""
    unknown = set(capabilities) - set(Capabilities.names())
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {Capabilities.names()}")

    def mark(test: _F) -> _F:
        test.__suite_requires__ = capabilities  # type: ignore[attr-defined]
        return test

    return mark


class AcceleratorSuite:
    """Base class of the conformance suite; subclass it in a test module named ``test_*.py``."""

    #: the accelerator under test, when its constructor needs no arguments (see :meth:`make_accelerator`)
    accelerator_class: ClassVar[type[Accelerator] | None] = None
    #: what the plugin under test can do; each test group checks its capability first (an instance
    #: attribute: a suite whose declarations depend on the test's parameters sets it per test)
    capabilities: Capabilities = Capabilities()
    #: how far memory totals may differ from an independent source (fraction of the total)
    memory_total_tolerance: ClassVar[float] = 0.01
    #: how far "used" may differ from an independent source that reports it, in bytes
    memory_used_tolerance_bytes: ClassVar[int] = 256 * 2**20
    #: detections in the leak check
    leak_iterations: ClassVar[int] = 20
    #: allowed growth of traced Python memory over the leak check, in bytes
    leak_memory_bytes: ClassVar[int] = 1 * 2**20

    # ------------------------------------------------------------------ fixtures to provide

    def make_accelerator(self) -> Accelerator:
        """A fresh accelerator under test: ``accelerator_class()``; override it where that needs arguments."""
        if self.accelerator_class is None:
            raise NotImplementedError(
                f"{type(self).__name__}: set accelerator_class, or override make_accelerator() "
                "or the 'accelerator' fixture"
            )
        return self.accelerator_class()

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        """The accelerator under test (default: :meth:`make_accelerator`)."""
        return self.make_accelerator()

    @pytest.fixture
    def detect_options(self) -> DetectOptions:
        """Options for detection (default: the defaults)."""
        return DetectOptions()

    @pytest.fixture
    def independent_views(self) -> dict[str, list[IndependentDevice]]:
        """Other sources' views of the same devices (capability ``independent_source``)."""
        raise NotImplementedError("capability independent_source needs the 'independent_views' fixture")

    @pytest.fixture
    def child_probe(self) -> Callable[[dict[str, str]], list[str]]:
        """uuids a child process sees under an environment (capability ``visibility_restricts``)."""
        raise NotImplementedError("capability visibility_restricts needs the 'child_probe' fixture")

    @pytest.fixture
    def absent_setup(self) -> tuple[Accelerator, DetectOptions]:
        """An accelerator and options where the vendor is absent (capability ``absent_vendor``)."""
        raise NotImplementedError("capability absent_vendor needs the 'absent_setup' fixture")

    @pytest.fixture
    def hung_setup(self) -> tuple[Accelerator, DetectOptions]:
        """An accelerator and options whose vendor tool hangs (capability ``tool_timeout``)."""
        raise NotImplementedError("capability tool_timeout needs the 'hung_setup' fixture")

    @pytest.fixture
    def garbled_setup(self) -> tuple[Accelerator, DetectOptions, str]:
        """Accelerator, options and tool name whose output is garbage (capability ``garbled_output``)."""
        raise NotImplementedError("capability garbled_output needs the 'garbled_setup' fixture")

    # ------------------------------------------------------------------ helpers

    def require(self, capability: str) -> None:
        """Skip the calling test, with the reason, unless ``capability`` is open."""
        reason = self.capabilities.reason_closed(capability)
        if reason is not None:
            pytest.skip(f"{capability}: {reason}")

    @pytest.fixture(autouse=True)
    def _capability_gate(self, request: pytest.FixtureRequest) -> None:
        """Skip a test whose capabilities are closed before any of its fixtures run."""
        for capability in getattr(request.function, "__suite_requires__", ()):
            self.require(capability)

    @pytest.fixture
    def devices(self, accelerator: Accelerator, detect_options: DetectOptions) -> list[Device]:
        """One detection's result."""
        return accelerator.detect(detect_options)

    # ------------------------------------------------------------------ tests

    @requires("has_devices")
    def test_identity(self, accelerator: Accelerator) -> None:
        """``name`` and ``vendor`` are set, lower case, and the name fits in a device reference."""
        assert accelerator.name, "Accelerator.name is empty"
        assert accelerator.name == accelerator.name.lower(), f"name {accelerator.name!r} is not lower case"
        assert ":" not in accelerator.name
        assert " " not in accelerator.name
        assert accelerator.vendor, "Accelerator.vendor is empty"

    def test_devices_found(self, devices: list[Device]) -> None:
        """Detection finds devices."""
        assert len(devices) >= 1, "no devices detected"

    @requires("has_devices")
    def test_runtime_overhead_is_well_formed(self, accelerator: Accelerator, devices: list[Device]) -> None:
        """``runtime_overhead`` answers for every detected device, with labelled, non-negative items.

        Checked for a quantized and a dense-BLAS llama.cpp workload and a vLLM one; the default
        (no overhead) passes.
        """
        workloads = [
            RuntimeWorkload(engine="llama.cpp", weight_types=("Q4_K",), micro_batch_tokens=512),
            RuntimeWorkload(
                engine="llama.cpp", weight_types=("F16",), dense_blas=True, micro_batch_tokens=2048
            ),
            RuntimeWorkload(engine="vllm", weight_types=("bfloat16",), dense_blas=True),
        ]
        for device in devices:
            for workload in workloads:
                overhead = accelerator.runtime_overhead(device, workload)
                assert isinstance(overhead, RuntimeOverhead), (
                    f"{type(overhead).__name__} is not a RuntimeOverhead"
                )
                for item in (*overhead.device_items, *overhead.host_items):
                    assert item.label.strip(), f"{accelerator.name}: an overhead item has no label"
                    assert item.bytes >= 0
                if overhead.device_items or overhead.host_items:
                    assert overhead.sources, f"{accelerator.name}: overhead numbers must cite their sources"

    @requires("has_devices")
    def test_fields_valid_and_consistent(self, accelerator: Accelerator, devices: list[Device]) -> None:
        """Types, names, memory in bytes with used <= total, unique uuids and indices, ordered by index."""
        for d in devices:
            assert isinstance(d, Device), f"detect() returned {type(d).__name__}, not Device"
            assert d.accelerator == accelerator.name, f"{d.uuid}: accelerator {d.accelerator!r}"
            assert d.vendor == accelerator.vendor, f"{d.uuid}: vendor {d.vendor!r}"
            assert d.name.strip(), f"{d.uuid}: empty name"
            assert d.memory_total_bytes >= 64 * 2**20, (
                f"{d.uuid}: memory_total_bytes={d.memory_total_bytes} is below 64 MiB: a unit error?"
            )
            if d.memory_used_bytes is not None:
                assert 0 <= d.memory_used_bytes <= d.memory_total_bytes
            if d.utilization_percent is not None:
                assert 0 <= d.utilization_percent <= 100
            if d.parent_uuid is not None:
                assert d.parent_uuid != d.uuid
        uuids = [d.uuid for d in devices]
        assert len(set(uuids)) == len(uuids), f"duplicate uuids: {uuids}"
        indices = [d.index for d in devices]
        assert len(set(indices)) == len(indices), f"duplicate indices: {indices}"
        assert indices == sorted(indices), f"devices not ordered by index: {indices}"

    @requires("has_devices", "has_temperature")
    def test_temperature_reported(self, devices: list[Device]) -> None:
        """Every device reports a plausible temperature."""
        for d in devices:
            assert d.temperature_celsius is not None, f"{d.uuid}: no temperature"
            assert -20 <= d.temperature_celsius <= 130, f"{d.uuid}: temperature {d.temperature_celsius}"

    @requires("has_devices", "has_utilization")
    def test_utilization_reported(self, devices: list[Device]) -> None:
        """Every device reports utilization."""
        assert all(d.utilization_percent is not None for d in devices)

    @requires("has_devices")
    def test_indices_stable_across_calls(
        self, accelerator: Accelerator, detect_options: DetectOptions
    ) -> None:
        """Two detections give the same uuid -> index mapping, names and totals."""
        first = {d.uuid: (d.index, d.name, d.memory_total_bytes) for d in accelerator.detect(detect_options)}
        second = {d.uuid: (d.index, d.name, d.memory_total_bytes) for d in accelerator.detect(detect_options)}
        assert first == second

    @requires("has_devices", "independent_source")
    def test_agrees_with_independent_source(
        self, devices: list[Device], independent_views: dict[str, list[IndependentDevice]]
    ) -> None:
        """Every independent source sees the same devices, names and memory (within tolerance)."""
        assert independent_views, "independent_views is empty"
        ours = {d.uuid: d for d in devices}
        for source, view in independent_views.items():
            theirs = {v.uuid: v for v in view}
            assert set(theirs) == set(ours), f"{source} sees {sorted(theirs)}, the plugin {sorted(ours)}"
            for uuid, other in theirs.items():
                mine = ours[uuid]
                if other.name is not None:
                    assert other.name == mine.name, f"{source}: name {other.name!r} != {mine.name!r}"
                if other.memory_total_bytes is not None:
                    delta = abs(other.memory_total_bytes - mine.memory_total_bytes)
                    assert delta <= self.memory_total_tolerance * mine.memory_total_bytes, (
                        f"{source}: total {other.memory_total_bytes} vs {mine.memory_total_bytes}"
                    )
                if other.memory_used_bytes is not None and mine.memory_used_bytes is not None:
                    delta = abs(other.memory_used_bytes - mine.memory_used_bytes)
                    assert delta <= self.memory_used_tolerance_bytes, (
                        f"{source}: used {other.memory_used_bytes} vs {mine.memory_used_bytes}"
                    )

    @requires("has_devices", "visibility_restricts")
    def test_visibility_restricts_child(
        self,
        accelerator: Accelerator,
        devices: list[Device],
        child_probe: Callable[[dict[str, str]], list[str]],
    ) -> None:
        """A child started with ``visibility_env(subset)`` sees exactly the subset, in order;
        the empty subset hides every device."""
        subsets: list[list[Device]] = [[], [devices[0]], [devices[-1]], list(devices)]
        if len(devices) >= 2:
            subsets.append(list(reversed(devices)))
        for subset in subsets:
            env = accelerator.visibility_env(subset)
            assert env, "visibility_env returned no variables"
            seen = child_probe(env)
            want = [d.uuid for d in subset]
            assert seen == want, f"with {env}: child sees {seen}, expected {want}"

    @requires("absent_vendor")
    def test_absent_vendor_is_not_an_error(self, absent_setup: tuple[Accelerator, DetectOptions]) -> None:
        """Where the vendor is absent: zero devices, or AcceleratorNotPresent with one short line."""
        accelerator, options = absent_setup
        try:
            found = accelerator.detect(options)
        except AcceleratorNotPresent as exc:
            message = str(exc)
            assert message, "empty diagnostic"
            assert "\n" not in message, f"diagnostic is not one line: {message!r}"
            assert len(message) <= 300
            return
        assert found == []

    @requires("tool_timeout")
    def test_hung_tool_is_killed(self, hung_setup: tuple[Accelerator, DetectOptions]) -> None:
        """A hung tool is killed after the configured time, with everything it started."""
        accelerator, options = hung_setup
        before = _child_pids() if sys.platform.startswith("linux") else set()
        started = time.monotonic()
        with pytest.raises(AcceleratorToolTimeout):
            accelerator.detect(options)
        assert time.monotonic() - started < options.tool_timeout_s + 5
        if sys.platform.startswith("linux"):
            assert _child_pids() - before == set(), "processes left behind after the timeout"

    @requires("garbled_output")
    def test_garbled_output_names_tool(self, garbled_setup: tuple[Accelerator, DetectOptions, str]) -> None:
        """Unparseable tool output raises AcceleratorOutputError naming the tool."""
        accelerator, options, tool = garbled_setup
        with pytest.raises(AcceleratorOutputError) as info:
            accelerator.detect(options)
        assert tool in str(info.value), f"message does not name {tool}: {info.value}"

    @requires("leak_free")
    def test_repeated_detection_stable_and_leak_free(
        self, accelerator: Accelerator, detect_options: DetectOptions
    ) -> None:
        """Many detections return the same devices and leave no processes, descriptors or memory."""
        if not sys.platform.startswith("linux"):
            pytest.skip("leak checks read /proc (Linux only)")
        try:
            baseline = _identity(accelerator.detect(detect_options))  # warm-up: imports, caches
        except AcceleratorNotPresent:
            baseline = None
        children, fds = _child_pids(), _fd_count()
        tracemalloc.start()
        try:
            start_mem = tracemalloc.get_traced_memory()[0]
            for _ in range(self.leak_iterations):
                try:
                    result: Any = _identity(accelerator.detect(detect_options))
                except AcceleratorNotPresent:
                    result = None
                assert result == baseline, "detection result changed between calls"
            grown = tracemalloc.get_traced_memory()[0] - start_mem
        finally:
            tracemalloc.stop()
        assert _child_pids() - children == set(), "child processes left behind"
        assert _fd_count() - fds < self.leak_iterations // 2, f"file descriptors grew from {fds}"
        assert grown <= self.leak_memory_bytes, f"traced memory grew by {grown} bytes"

    @requires("has_devices")
    def test_health_of_detected_devices(
        self, accelerator: Accelerator, devices: list[Device], detect_options: DetectOptions
    ) -> None:
        """Devices just detected are healthy, in order."""
        health = accelerator.health(devices, detect_options)
        assert [h.uuid for h in health] == [d.uuid for d in devices]
        assert all(h.healthy for h in health), [h.message for h in health if not h.healthy]


def _identity(devices: list[Device]) -> list[tuple[int, str, str, int]]:
    return [(d.index, d.uuid, d.name, d.memory_total_bytes) for d in devices]
