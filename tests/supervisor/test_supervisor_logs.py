"""Rotated logs and restart backoff arithmetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from gpustack_core.supervisor import RestartPolicy, RotatingLogWriter, follow_log, log_tail, log_tail_lines


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


# ---------------------------------------------------------------- tail by lines, follow


def test_log_tail_lines_counts_lines_across_the_rotated_copy(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.with_name("x.log.1").write_bytes(b"old 1\nold 2\n")
    path.write_bytes(b"new 1\nnew 2\npartial")
    assert log_tail_lines(path, 1) == b"partial"
    assert log_tail_lines(path, 3) == b"new 1\nnew 2\npartial"
    assert log_tail_lines(path, 4) == b"old 2\nnew 1\nnew 2\npartial"
    assert log_tail_lines(path, 99) == b"old 1\nold 2\nnew 1\nnew 2\npartial"
    assert log_tail_lines(path, 0) == b""
    assert log_tail_lines(tmp_path / "missing.log", 5) == b""


def test_log_tail_lines_reads_long_logs_backwards_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    lines = [f"line {i} ".encode() * 40 for i in range(3000)]  # ~1 MiB, many 64 KiB chunks
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert log_tail_lines(path, 1000) == b"\n".join(lines[-1000:]) + b"\n"
    assert log_tail_lines(path, 2, end=len(lines[0]) * 3 + 3) == b"\n".join(lines[1:3]) + b"\n"


@pytest.mark.anyio
async def test_follow_log_reads_every_byte_in_order_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "engine.log"
    writer = RotatingLogWriter(path, max_bytes=200, keep=2)
    writer.write(b"before\n")
    start = path.stat().st_size
    received = bytearray()
    expected = b"".join(f"line {i:03d}\n".encode() for i in range(60))  # rotates several times

    async def reader() -> None:
        async for chunk in follow_log(path, start, poll_interval_s=0.01):
            received.extend(chunk)
            if len(received) >= len(expected):
                return

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            for i in range(60):
                writer.write(f"line {i:03d}\n".encode())
                if i % 7 == 0:
                    await anyio.sleep(0.03)  # let the reader catch up sometimes, fall behind others
    writer.close()
    assert bytes(received) == expected


@pytest.mark.anyio
async def test_follow_log_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    got = bytearray()

    async def reader() -> None:
        async for chunk in follow_log(path, 0, poll_interval_s=0.01):
            got.extend(chunk)
            return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await anyio.sleep(0.05)
            path.write_bytes(b"first line\n")
    assert bytes(got) == b"first line\n"
