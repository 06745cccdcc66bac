"""Rotated logs and restart backoff arithmetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpustack_core.supervisor import RestartPolicy, RotatingLogWriter, log_tail


def test_rotation_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    writer = RotatingLogWriter(path, max_bytes=10, keep=2)
    for chunk in (b"aaaaaaaa\n", b"bbbbbbbb\n", b"cccccccc\n", b"dddddddd\n"):
        writer.write(chunk)
    writer.close()
    assert path.read_bytes() == b"dddddddd\n"
    assert (tmp_path / "e.log.1").read_bytes() == b"cccccccc\n"
    assert (tmp_path / "e.log.2").read_bytes() == b"bbbbbbbb\n"
    assert not (tmp_path / "e.log.3").exists()
    assert log_tail(path, 12) == "cc\ndddddddd\n"


def test_rotation_keep_zero_truncates(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    writer = RotatingLogWriter(path, max_bytes=4, keep=0)
    writer.write(b"1234")
    writer.write(b"56")
    writer.close()
    assert path.read_bytes() == b"56"
    assert list(tmp_path.iterdir()) == [path]


def test_bad_rotation_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes must be"):
        RotatingLogWriter(tmp_path / "x.log", max_bytes=0, keep=1)


def test_log_pump_process_copies_stdin(tmp_path: Path) -> None:
    path = tmp_path / "p.log"
    result = subprocess.run(
        [sys.executable, "-m", "gpustack_core.supervisor.logpump", str(path), "1000", "1"],
        input=b"line one\nline two\n",
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert path.read_bytes() == b"line one\nline two\n"


def test_backoff_doubles_and_caps() -> None:
    policy = RestartPolicy(initial_backoff_s=1, max_backoff_s=5)
    assert [policy.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert RestartPolicy(initial_backoff_s=0.5, max_backoff_s=60).backoff(1000) == 60.0
