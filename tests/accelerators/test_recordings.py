"""The conformance manifest (``fixtures/conformance.toml``) and the fake tools it builds."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from gpustack_core.testing import Capabilities, ConformanceManifest, ManifestError

GOOD = """
visibility_variable = "ACME_VISIBLE_DEVICES"

[capabilities]
has_devices = true
has_temperature = "acme-smi reports no temperature"

[[recordings]]
id = "x100"
about = "two ACME X100"
calls = [
  { tool = "acme-smi", args = "--json", stdout = "smi.json" },
  { tool = "acme-smi", args = "--version", stdout = "version.txt" },
  { tool = "acme-info", stdout = "info.txt" },
  { tool = "acme-report", args = "-j", files = { "report.json" = "report.json" } },
]
garbled = { tool = "acme-smi", args = "--json", stdout = "bad.json" }
"""


def _write(folder: Path, manifest: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {
        "smi.json": '{"ok": 1}',
        "version.txt": "1.2\n",
        "info.txt": "info\n",
        "report.json": '{"cards": 2}',
        "bad.json": "{",
    }.items():
        (folder / name).write_text(text)
    path = folder / "conformance.toml"
    path.write_text(textwrap.dedent(manifest))
    return path


def _run(tools_dir: Path, *argv: str, cwd: Path) -> str:
    return subprocess.run(
        [str(tools_dir / argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def test_manifest_is_read(tmp_path: Path) -> None:
    manifest = ConformanceManifest.load(_write(tmp_path / "fixtures", GOOD))
    assert manifest.visibility_variable == "ACME_VISIBLE_DEVICES"
    assert manifest.capabilities == Capabilities(
        has_devices=True, has_temperature="acme-smi reports no temperature"
    )
    (recording,) = manifest.recordings
    assert recording.id == "x100"
    assert recording.capabilities is manifest.capabilities
    assert [(c.tool, c.args) for c in recording.calls] == [
        ("acme-smi", "--json"),
        ("acme-smi", "--version"),
        ("acme-info", None),
        ("acme-report", "-j"),
    ]
    assert recording.calls[3].files == {"report.json": '{"cards": 2}'}
    assert ConformanceManifest.beside(tmp_path / "test_acme.py").recording("x100") == recording
    with pytest.raises(KeyError, match=r"no recording 'x200'; there are \['x100'\]"):
        manifest.recording("x200")


def test_fake_tools_answer_as_recorded_and_garbled(tmp_path: Path) -> None:
    recording = ConformanceManifest.load(_write(tmp_path / "fixtures", GOOD)).recordings[0]
    tools = recording.fake_tools(tmp_path / "bin").directory
    assert _run(tools, "acme-smi", "--json", cwd=tmp_path) == '{"ok": 1}'
    assert _run(tools, "acme-smi", "--version", cwd=tmp_path) == "1.2\n"
    assert _run(tools, "acme-info", "--any", "args", cwd=tmp_path) == "info\n"
    assert _run(tools, "acme-report", "-j", cwd=tmp_path) == ""
    assert (tmp_path / "report.json").read_text() == '{"cards": 2}'
    unknown = subprocess.run([str(tools / "acme-smi"), "--xml"], capture_output=True, text=True)
    assert unknown.returncode == 2
    assert "no recorded output for arguments '--xml'" in unknown.stderr
    garbled = recording.fake_tools(tmp_path / "garbled", garbled=True).directory
    assert _run(garbled, "acme-smi", "--json", cwd=tmp_path) == "{"
    assert _run(garbled, "acme-smi", "--version", cwd=tmp_path) == "1.2\n"


def test_garbled_without_args_names_the_tools_only_call(tmp_path: Path) -> None:
    manifest = GOOD.replace(
        'garbled = { tool = "acme-smi", args = "--json", stdout = "bad.json" }',
        'garbled = { tool = "acme-info", stdout = "bad.json" }',
    )
    recording = ConformanceManifest.load(_write(tmp_path / "fixtures", manifest)).recordings[0]
    assert recording.garbled is not None
    garbled = recording.garbled
    assert (garbled.tool, garbled.args, garbled.stdout) == ("acme-info", None, "{")


def test_a_recording_without_garbled_says_what_is_missing(tmp_path: Path) -> None:
    manifest = GOOD.replace('garbled = { tool = "acme-smi", args = "--json", stdout = "bad.json" }', "")
    recording = ConformanceManifest.load(_write(tmp_path / "fixtures", manifest)).recordings[0]
    with pytest.raises(NotImplementedError, match="recording 'x100' has no 'garbled' entry"):
        recording.fake_tools(tmp_path / "bin", garbled=True)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("has_temperature =", "has_wings =", r"\[capabilities\]: unknown keys \['has_wings'\]"),
        ("has_devices = true", "has_devices = 1", "has_devices must be true, false or a reason, got 1"),
        ('"acme-smi reports no temperature"', '""', "has_temperature must be true, false or a reason"),
        ('id = "x100"', 'id = "x 100"', "id may hold letters, digits"),
        ('about = "two ACME X100"\n', "", r"recording 'x100': about is missing"),
        ('stdout = "info.txt"', 'stdout = "gone.txt"', r"\(acme-info\): fixture file 'gone.txt' not found"),
        ('args = "--version"', 'args = "--json"', r"acme-smi '--json' is recorded twice"),
        ('args = "--json", stdout = "bad.json"', 'stdout = "bad.json"', "garbled must name exactly one"),
        ('garbled = { tool = "acme-smi"', 'garbled = { tool = "acme-gone"', "garbled must name exactly one"),
        ("[[recordings]]", "[[recording]]", r"unknown keys \['recording'\]"),
        ('variable = "ACME_VISIBLE_DEVICES"', "variable = 3", "visibility_variable must be a non-empty"),
        ("calls = [", "calls = []\nold_calls = [", r"unknown keys \['old_calls'\]"),
    ],
)
def test_mistakes_name_the_file_and_the_entry(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    path = _write(tmp_path / "fixtures", GOOD.replace(old, new, 1))
    with pytest.raises(ManifestError, match=message) as info:
        ConformanceManifest.load(path)
    assert str(path) in str(info.value)


def test_missing_or_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"conformance\.toml not found: a RecordedToolSuite reads"):
        ConformanceManifest.load(tmp_path / "conformance.toml")
    (tmp_path / "conformance.toml").write_text("recordings = [")
    with pytest.raises(ManifestError, match="not valid TOML"):
        ConformanceManifest.load(tmp_path / "conformance.toml")
    (tmp_path / "conformance.toml").write_text('visibility_variable = "X"\n')
    with pytest.raises(ManifestError, match=r"declares no \[\[recordings\]\]"):
        ConformanceManifest.load(tmp_path / "conformance.toml")


def test_every_built_in_manifest_loads() -> None:
    plugins = Path(__file__).parents[2] / "plugins" / "accelerators"
    manifests = sorted(plugins.glob("*/tests/fixtures/conformance.toml"))
    assert len(manifests) == 9  # every plugin but cpu, which runs on this machine only
    for path in manifests:
        manifest = ConformanceManifest.load(path)
        assert all(r.garbled is not None for r in manifest.recordings), path
