"""``install_progress``: the current step and last lines of an install log, as run_logged writes it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gpustack_core.engines import install_progress, install_version, run_logged
from gpustack_core.errors import EngineNotInstalledError
from gpustack_core.types import EngineOptions


def test_phase_and_tail_from_run_logged_steps(tmp_path: Path) -> None:
    options = EngineOptions(engines_dir=str(tmp_path))
    assert install_progress(options, "demo", "1.0") is None
    seen: list[dict[str, object] | None] = []

    def populate(directory: Path, log: Path) -> None:
        run_logged([sys.executable, "-c", "print('fetched')"], "downloading the source", log)
        seen.append(install_progress(options, "demo", "1.0"))
        noisy = "import sys\nfor i in range(20000): print('warning', i)\nprint('[ 50%] Building ggml.c')"
        run_logged([sys.executable, "-c", noisy], "building demo", log)
        seen.append(install_progress(options, "demo", "1.0"))
        (directory / "bin").mkdir()
        (directory / "bin" / "demo").write_text("")

    install_version(options, "demo", "1.0", populate, executable="bin/demo", what="demo 1.0")
    first, second = seen
    assert first is not None
    assert first["phase"] == "downloading the source"
    tail = first["log_tail"]
    assert isinstance(tail, list)
    assert tail[0].startswith(f"$ {sys.executable} -c ")
    assert tail[1:] == ["fetched"]
    assert second is not None
    assert second["phase"] == "building demo"  # its line lies more than 64 KiB back
    assert second["log_tail"][-1] == "[ 50%] Building ggml.c"  # type: ignore[index]


def test_a_failed_step_names_itself(tmp_path: Path) -> None:
    options = EngineOptions(engines_dir=str(tmp_path))

    def populate(directory: Path, log: Path) -> None:
        run_logged([sys.executable, "-c", "raise SystemExit(3)"], "compiling", log)

    with pytest.raises(EngineNotInstalledError, match="compiling failed"):
        install_version(options, "demo", "2.0", populate, executable="bin/demo", what="demo 2.0")
    progress = install_progress(options, "demo", "2.0")
    assert progress is not None
    assert progress["phase"] == "compiling"
