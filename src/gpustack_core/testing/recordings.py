"""The accelerator suite on recorded vendor-tool output: :class:`RecordedToolSuite` and its manifest.

A plugin that reads vendor tools keeps, beside its test module, a ``fixtures/`` folder with the
recorded output, ``SOURCE.md`` (where each file came from) and ``conformance.toml``, which declares
the plugin's capabilities and, per recording, which tool printed which file::

    visibility_variable = "ACME_VISIBLE_DEVICES"   # the variable the vendor runtime reads

    [capabilities]                                  # as gpustack_core.testing.Capabilities
    has_devices = true
    visibility_restricts = true
    has_temperature = "acme-smi reports no temperature"

    [[recordings]]
    id = "x100-1.2"                                 # names each result: test_identity[x100-1.2]
    about = "acme-smi 1.2 on two ACME X100 (SOURCE.md)"
    calls = [
      { tool = "acme-smi", args = "--json", stdout = "acme-smi-1.2.json" },
      { tool = "acme-info", stdout = "acme-info.txt" },                  # no args: any arguments
      { tool = "acme-report", files = { "report.json" = "report.json" } },  # writes into its cwd
    ]
    garbled = { tool = "acme-smi", stdout = "acme-smi-1.2.garbled.json" }

A call's ``stdout`` (the file holding what it printed) and ``files`` (what it writes into its
working directory: written name -> fixture file) are optional; an absent ``args`` matches any
arguments. ``garbled`` names one recorded call by ``tool`` (and ``args`` where that tool has
several) and replaces what it prints and writes; the garbled-output check runs on that. Every
mistake in the file is a :class:`ManifestError` naming the file and the entry.

The test module is then a subclass naming the accelerator (see :class:`RecordedToolSuite`).
Other tests of the plugin serve the same recordings with
``ConformanceManifest.beside(__file__).recording(id).fake_tools(tmp_path)``.
"""

from __future__ import annotations

import inspect
import os
import re
import stat
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gpustack_core.contracts import Accelerator
from gpustack_core.types import DetectOptions, Device

from .accelerators import AcceleratorSuite, Capabilities, emulated_runtime_probe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

__all__ = [
    "ConformanceManifest",
    "FakeTools",
    "ManifestError",
    "RecordedCall",
    "RecordedToolSuite",
    "Recording",
]

#: the manifest's file name, in the suite's fixtures folder
MANIFEST_NAME = "conformance.toml"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FakeTools:
    """Small executables on a private ``PATH`` that print recorded vendor-tool output.

    Parameters:
        directory: an empty directory (``tmp_path / "bin"``) to put the executables in.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        name: str,
        outputs: dict[str, str] | str,
        *,
        exit_code: int = 0,
        hang_s: float | None = None,
        spawn_child: bool = False,
        writes: dict[str, str] | None = None,
    ) -> Path:
        """Add tool ``name``: it prints ``outputs`` (or ``outputs[" ".join(args)]``) and exits.

        ``hang_s`` makes it sleep first (a hung tool); ``spawn_child`` makes it also start a
        sleeping grandchild, to prove the whole process group is killed. ``writes`` maps file
        names to contents the tool writes into its working directory (tools that report to a file).
        """
        table = {"": outputs} if isinstance(outputs, str) else outputs
        script = textwrap.dedent(
            f"""\
            #!{sys.executable}
            import os, subprocess, sys, time
            table = {table!r}
            if {spawn_child!r}:
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            if {hang_s!r} is not None:
                time.sleep({hang_s!r})
            for file_name, content in {writes or {}!r}.items():
                with open(file_name, "w") as handle:
                    handle.write(content)
            key = " ".join(sys.argv[1:])
            text = table.get(key, table.get(""))
            if text is None:
                sys.stderr.write("fake {name}: no recorded output for arguments %r\\n" % key)
                sys.exit(2)
            sys.stdout.write(text)
            sys.exit({exit_code!r})
            """
        )
        path = self.directory / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    def options(self, timeout_s: float = 5.0) -> DetectOptions:
        """DetectOptions whose ``PATH`` holds only these tools."""
        env = {k: v for k, v in os.environ.items() if k != "PATH"}
        env["PATH"] = str(self.directory)
        return DetectOptions(tool_timeout_s=timeout_s, env=env)


class ManifestError(ValueError):
    """A ``conformance.toml`` that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class RecordedCall:
    """One recorded run of a vendor tool: what it printed and the files it wrote."""

    #: the executable's name, looked up on ``PATH``
    tool: str
    #: the arguments, joined by single spaces; ``None`` matches any arguments
    args: str | None = None
    #: what it printed
    stdout: str = ""
    #: files it wrote into its working directory: name -> content
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recording:
    """One recorded machine: the calls its vendor tools answered, and what the suite declares for it."""

    #: short name of the recording; it names each suite result (``test_identity[<id>]``)
    id: str
    #: what was recorded, on what hardware
    about: str
    calls: tuple[RecordedCall, ...]
    #: the call that replaces its recorded namesake in the garbled-output check
    garbled: RecordedCall | None
    #: the plugin's capabilities (the manifest's ``[capabilities]``)
    capabilities: Capabilities
    #: the variable the vendor runtime reads to restrict devices, if any
    visibility_variable: str | None
    #: the manifest it was declared in (for messages)
    manifest: Path

    def calls_as_run(self, *, garbled: bool = False) -> list[RecordedCall]:
        """The recorded calls; with ``garbled``, the ``garbled`` call in place of its namesake."""
        if not garbled:
            return list(self.calls)
        if self.garbled is None:
            raise NotImplementedError(
                f"{self.manifest}: recording {self.id!r} has no 'garbled' entry "
                "(capability garbled_output needs one)"
            )
        bad = self.garbled
        return [bad if (c.tool, c.args) == (bad.tool, bad.args) else c for c in self.calls]

    def fake_tools(
        self,
        directory: Path,
        *,
        garbled: bool = False,
        hang_s: float | None = None,
        spawn_child: bool = False,
    ) -> FakeTools:
        """Fake tools in ``directory`` answering as recorded (:meth:`calls_as_run`).

        ``garbled`` swaps in the ``garbled`` call; ``hang_s`` and ``spawn_child`` (see
        :meth:`FakeTools.add`) apply to every tool.
        """
        tools = FakeTools(directory)
        for tool, outputs, writes in _by_tool(self.calls_as_run(garbled=garbled), f"{self.manifest}"):
            tools.add(tool, outputs, hang_s=hang_s, spawn_child=spawn_child, writes=writes)
        return tools


@dataclass(frozen=True)
class ConformanceManifest:
    """The declarations in a plugin's ``fixtures/conformance.toml`` (format: this module's docstring)."""

    path: Path
    capabilities: Capabilities
    visibility_variable: str | None
    recordings: tuple[Recording, ...]

    @classmethod
    def load(cls, path: Path) -> ConformanceManifest:
        """Read and check ``path``; fixture file names in it are relative to its folder.

        Raises:
            ManifestError: the file is missing, not TOML, or an entry is wrong (the message says which).
        """
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(
                f"{path} not found: a RecordedToolSuite reads its declarations there "
                "(see gpustack_core.testing.recordings)"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{path}: not valid TOML: {exc}") from None
        _only(data, {"visibility_variable", "capabilities", "recordings"}, f"{path}")
        variable = _optional(data, "visibility_variable", f"{path}")
        capabilities = _capabilities(data.get("capabilities", {}), path)
        recordings = data.get("recordings")
        if not isinstance(recordings, list) or not recordings:
            raise ManifestError(f"{path}: declares no [[recordings]]")
        loaded = tuple(_recording(entry, path, capabilities, variable) for entry in recordings)
        ids = [r.id for r in loaded]
        if len(set(ids)) != len(ids):
            raise ManifestError(f"{path}: recording ids repeat: {ids}")
        return cls(path=path, capabilities=capabilities, visibility_variable=variable, recordings=loaded)

    @classmethod
    def beside(cls, test_file: str | Path) -> ConformanceManifest:
        """The manifest ``fixtures/conformance.toml`` in the folder of ``test_file`` (pass ``__file__``)."""
        return cls.load(Path(test_file).parent / "fixtures" / MANIFEST_NAME)

    def recording(self, recording_id: str) -> Recording:
        """The recording named ``recording_id``.

        Raises:
            KeyError: no such recording (the message lists those there are).
        """
        for recording in self.recordings:
            if recording.id == recording_id:
                return recording
        known = [r.id for r in self.recordings]
        raise KeyError(f"{self.path}: no recording {recording_id!r}; there are {known}")


# ---------------------------------------------------------------------------- reading the file


def _only(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise ManifestError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")


def _optional(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ManifestError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _required(table: Mapping[str, Any], key: str, where: str) -> str:
    value = _optional(table, key, where)
    if value is None:
        raise ManifestError(f"{where}: {key} is missing")
    return value


def _capabilities(table: object, path: Path) -> Capabilities:
    if not isinstance(table, dict):
        raise ManifestError(f"{path}: [capabilities] must be a table")
    where = f"{path} [capabilities]"
    _only(table, set(Capabilities.names()), where)
    for name, value in table.items():
        if not (value is True or value is False or (isinstance(value, str) and value)):
            raise ManifestError(f"{where}: {name} must be true, false or a reason, got {value!r}")
    return Capabilities(**table)


def _read(folder: Path, name: str, where: str) -> str:
    try:
        return (folder / name).read_text()
    except FileNotFoundError:
        raise ManifestError(f"{where}: fixture file {name!r} not found in {folder}") from None


def _call(table: object, folder: Path, where: str) -> RecordedCall:
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: a call must be a table, got {table!r}")
    _only(table, {"tool", "args", "stdout", "files"}, where)
    tool = _required(table, "tool", where)
    where = f"{where} ({tool})"
    stdout = _optional(table, "stdout", where)
    files = table.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ManifestError(f"{where}: files must map written file names to fixture files")
    return RecordedCall(
        tool=tool,
        args=_optional(table, "args", where),
        stdout="" if stdout is None else _read(folder, stdout, where),
        files={name: _read(folder, source, where) for name, source in files.items()},
    )


def _recording(table: object, path: Path, capabilities: Capabilities, variable: str | None) -> Recording:
    if not isinstance(table, dict):
        raise ManifestError(f"{path}: each [[recordings]] entry must be a table, got {table!r}")
    where = f"{path} recording {table.get('id', '?')!r}"
    _only(table, {"id", "about", "calls", "garbled"}, where)
    recording_id = _required(table, "id", where)
    if not _ID.match(recording_id):
        raise ManifestError(f"{where}: id may hold letters, digits, '.', '_' and '-' only")
    calls = table.get("calls")
    if not isinstance(calls, list) or not calls:
        raise ManifestError(f"{where}: declares no calls")
    recorded = tuple(_call(c, path.parent, f"{where} call") for c in calls)
    _by_tool(list(recorded), where)
    garbled = None
    if "garbled" in table:
        garbled = _call(table["garbled"], path.parent, f"{where} garbled")
        matches = [c for c in recorded if c.tool == garbled.tool and (garbled.args in (None, c.args))]
        if len(matches) != 1:
            raise ManifestError(
                f"{where}: garbled must name exactly one recorded call (tool, and args where the "
                f"tool has several); {len(matches)} match {garbled.tool!r} {garbled.args!r}"
            )
        garbled = replace(garbled, args=matches[0].args)
    recording = Recording(
        id=recording_id,
        about=_required(table, "about", where),
        calls=recorded,
        garbled=garbled,
        capabilities=capabilities,
        visibility_variable=variable,
        manifest=path,
    )
    if garbled is not None:
        _by_tool(recording.calls_as_run(garbled=True), f"{where} garbled")
    return recording


def _by_tool(calls: list[RecordedCall], where: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """Per tool: its outputs by joined arguments (``""``: any) and the files it writes."""
    grouped: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for call in calls:
        outputs, writes = grouped.setdefault(call.tool, ({}, dict(call.files)))
        key = call.args or ""
        if key in outputs:
            raise ManifestError(f"{where}: {call.tool} {key!r} is recorded twice")
        if dict(call.files) != writes:
            raise ManifestError(f"{where}: every call of {call.tool} must write the same files")
        outputs[key] = call.stdout
    return [(tool, outputs, writes) for tool, (outputs, writes) in grouped.items()]


# ---------------------------------------------------------------------------- the suite


class RecordedToolSuite(AcceleratorSuite):
    """The suite for a plugin that reads vendor tools, run once per recording in its manifest.

    A test module of a few lines adopts it; everything else is declared in
    ``fixtures/conformance.toml`` beside the module (format: this module's docstring)::

        from gpustack_accelerator_acme import AcmeAccelerator

        from gpustack_core.testing import RecordedToolSuite


        class TestAcmeRecorded(RecordedToolSuite):
            accelerator_class = AcmeAccelerator

    Every test runs once per recording (``test_identity[x100-1.2]``), under the manifest's
    capabilities, with that recording's fake tools alone on ``PATH``. The fixtures follow from the
    manifest: ``child_probe`` emulates ``visibility_variable`` over the detected devices; absent:
    an empty ``PATH``; hung: every tool sleeps and starts a child, and is killed after
    :attr:`hung_timeout_s`; garbled: the ``garbled`` call in place of its namesake, and the error
    must name its tool. ``independent_views`` is the subclass's to provide where it declares
    ``independent_source``. Override :meth:`make_accelerator` where the accelerator needs arguments.
    """

    #: the folder holding ``conformance.toml`` and the recorded files (default: ``fixtures/``
    #: beside the subclass's test module)
    fixtures_dir: ClassVar[Path | None] = None
    #: the tool timeout the hung-tool check runs under, in seconds
    hung_timeout_s: ClassVar[float] = 0.5

    def manifest(self) -> ConformanceManifest:
        """The subclass's manifest, read afresh."""
        directory = self.fixtures_dir or Path(inspect.getfile(type(self))).parent / "fixtures"
        return ConformanceManifest.load(directory / MANIFEST_NAME)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``recording`` (which every test uses) over the manifest's recordings."""
        if "recording" in metafunc.fixturenames:
            recordings = self.manifest().recordings
            metafunc.parametrize("recording", recordings, ids=[r.id for r in recordings])

    @pytest.fixture(autouse=True)
    def _capability_gate(self, request: pytest.FixtureRequest, recording: Recording) -> None:
        """The manifest's capabilities for this test's instance; then the closed ones skip."""
        self.capabilities = recording.capabilities
        for capability in getattr(request.function, "__suite_requires__", ()):
            self.require(capability)

    @pytest.fixture
    def detect_options(self, recording: Recording, tmp_path: Path) -> DetectOptions:
        """A ``PATH`` holding only the recording's tools."""
        return recording.fake_tools(tmp_path / "bin").options()

    @pytest.fixture
    def child_probe(
        self, recording: Recording, devices: list[Device]
    ) -> Callable[[dict[str, str]], list[str]]:
        """The vendor runtime's visibility rule for ``visibility_variable``, emulated."""
        if recording.visibility_variable is None:
            raise NotImplementedError(
                f"{recording.manifest}: capability visibility_restricts needs visibility_variable"
            )
        return emulated_runtime_probe(recording.visibility_variable, devices)

    @pytest.fixture
    def absent_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        """No vendor tool on ``PATH``."""
        return self.make_accelerator(), FakeTools(tmp_path / "empty").options()

    @pytest.fixture
    def hung_setup(self, recording: Recording, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        """Every recorded tool hangs (and starts a child) past :attr:`hung_timeout_s`."""
        tools = recording.fake_tools(tmp_path / "hung", hang_s=60, spawn_child=True)
        return self.make_accelerator(), tools.options(timeout_s=self.hung_timeout_s)

    @pytest.fixture
    def garbled_setup(self, recording: Recording, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        """The recording with its ``garbled`` call swapped in, and the tool the error must name."""
        tools = recording.fake_tools(tmp_path / "garbled", garbled=True)
        assert recording.garbled is not None  # fake_tools(garbled=True) raised otherwise
        return self.make_accelerator(), tools.options(), recording.garbled.tool
