"""Pinned versions side by side: virtualenv installs from an offline wheelhouse, listing, removal."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from gpustack_core.engines import (
    ENGINES_DIR_ENV,
    MARKER_FILE,
    default_engine_options,
    install_venv,
    list_installations,
    record_installation,
    remove_installation,
    version_dir,
    version_sort_key,
)
from gpustack_core.errors import EngineError, EngineNotInstalledError
from gpustack_core.types import EngineInstallation, EngineOptions


def make_wheel(wheelhouse: Path, version: str) -> None:
    """A minimal pure-Python wheel 'fake-engine' with a console script 'fake-engine'."""
    name = f"fake_engine-{version}"
    files = {
        "fake_engine/__init__.py": f"VERSION = {version!r}\ndef main():\n    print(VERSION)\n",
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: fake-engine\nVersion: {version}\n",
        f"{name}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{name}.dist-info/entry_points.txt": "[console_scripts]\nfake-engine = fake_engine:main\n",
    }
    record_lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(text.encode())}")
    record_lines.append(f"{name}.dist-info/RECORD,,")
    files[f"{name}.dist-info/RECORD"] = "\n".join(record_lines) + "\n"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheelhouse / f"{name}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)


def fake_installation(options: EngineOptions, engine: str, version: str) -> EngineInstallation:
    directory = version_dir(options, engine, version)
    (directory / "bin").mkdir(parents=True)
    program = directory / "bin" / "server"
    program.write_text("#!/bin/sh\n")
    installation = EngineInstallation(
        engine=engine, version=version, executable=str(program), prefix=str(directory)
    )
    record_installation(installation, directory)
    return installation


def test_two_versions_side_by_side_from_a_wheelhouse(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    make_wheel(wheelhouse, "1.0.0")
    make_wheel(wheelhouse, "1.1.0")
    options = EngineOptions(engines_dir=str(tmp_path / "engines"), wheelhouse=str(wheelhouse), offline=True)
    first = install_venv("fake", "1.0.0", ["fake-engine==1.0.0"], "fake-engine", options)
    second = install_venv("fake", "1.1.0", ["fake-engine==1.1.0"], "fake-engine", options)
    assert Path(first.executable).is_file()
    ran = subprocess.run([first.executable], capture_output=True, text=True, check=True, timeout=30)
    assert ran.stdout.strip() == "1.0.0"
    ran = subprocess.run([second.executable], capture_output=True, text=True, check=True, timeout=30)
    assert ran.stdout.strip() == "1.1.0"
    assert first.prefix != second.prefix
    assert [i.version for i in list_installations(options, "fake")] == ["1.0.0", "1.1.0"]
    again = install_venv("fake", "1.0.0", ["fake-engine==1.0.0"], "fake-engine", options)
    assert again == first  # already complete: returned as is
    remove_installation(first, options)
    assert [i.version for i in list_installations(options, "fake")] == ["1.1.0"]
    assert not Path(first.prefix or "").exists()


def test_failed_install_leaves_nothing_behind(tmp_path: Path) -> None:
    options = EngineOptions(
        engines_dir=str(tmp_path / "engines"), wheelhouse=str(tmp_path / "empty"), offline=True
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineNotInstalledError, match="pip install fake-engine==9"):
        install_venv("fake", "9", ["fake-engine==9"], "fake-engine", options)
    assert not version_dir(options, "fake", "9").exists()
    assert list_installations(options, "fake") == []


def test_offline_without_wheelhouse_is_refused(tmp_path: Path) -> None:
    options = EngineOptions(engines_dir=str(tmp_path), offline=True)
    with pytest.raises(EngineNotInstalledError, match="without a wheelhouse"):
        install_venv("fake", "1", ["fake-engine==1"], "fake-engine", options)


def test_incomplete_directories_are_not_listed(tmp_path: Path) -> None:
    options = EngineOptions(engines_dir=str(tmp_path))
    fake_installation(options, "eng", "0.10.0")
    fake_installation(options, "eng", "0.9.1")
    (version_dir(options, "eng", "0.11.0") / "bin").mkdir(parents=True)  # interrupted: no marker
    assert [i.version for i in list_installations(options, "eng")] == ["0.9.1", "0.10.0"]
    assert list_installations(options, "missing") == []


def test_remove_refuses_located_and_foreign(tmp_path: Path) -> None:
    options = EngineOptions(engines_dir=str(tmp_path / "engines"))
    located = EngineInstallation(engine="eng", version="system", executable="/usr/bin/true", origin="located")
    with pytest.raises(EngineError, match="found on the system"):
        remove_installation(located, options)
    elsewhere = EngineInstallation(engine="eng", version="1", executable="/x", prefix=str(tmp_path / "other"))
    with pytest.raises(EngineError, match="refusing to remove"):
        remove_installation(elsewhere, options)


def test_bad_names_are_refused(tmp_path: Path) -> None:
    options = EngineOptions(engines_dir=str(tmp_path))
    with pytest.raises(EngineError, match="invalid engine version"):
        version_dir(options, "eng", "../../etc")


def test_version_order_and_default_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert sorted(["0.10.0", "0.3.36", "0.3.9"], key=version_sort_key) == ["0.3.9", "0.3.36", "0.10.0"]
    monkeypatch.setenv(ENGINES_DIR_ENV, str(tmp_path))
    assert default_engine_options().engines_dir == str(tmp_path)
    monkeypatch.delenv(ENGINES_DIR_ENV)
    assert default_engine_options().engines_dir.endswith(".cache/gpustack-core/engines")
    assert MARKER_FILE == "gpustack-installation.json"
