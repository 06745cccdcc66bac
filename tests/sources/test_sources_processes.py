"""Several processes and killed processes: the ``gpustack-core download`` CLI against a fake Hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import GGUF_Q4, MMPROJ
from fake_hubs import COMMIT, HubServer, HubState

CLI = str(Path(sys.executable).parent / "gpustack-core")
REF = "huggingface:org/tiny-gguf#Q4_K_M"
KEY = "org/tiny-gguf/tiny-Q4_K_M.gguf"


def _cli(server: HubServer, cache: Path, *extra: str) -> list[str]:
    return [CLI, "download", REF, "--endpoint", server.url, "--cache-dir", str(cache), *extra]


def test_two_processes_download_once(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    state, server = hf_hub
    state.bytes_per_second = 2_000_000  # ~0.7 s for the model file: the two runs overlap
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(_cli(server, cache, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    assert len(state.download_gets(KEY)) == 1  # one full-body GET between the two processes
    assert results[0]["paths"] == results[1]["paths"]
    assert sorted(r["downloaded_bytes"] for r in results) == [0, len(GGUF_Q4) + len(MMPROJ)]
    assert Path(results[0]["paths"][0]).read_bytes() == GGUF_Q4


def test_cli_resumes_after_kill_9(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    state, server = hf_hub
    state.bytes_per_second = 250_000  # ~5.5 s for the model file
    cache = tmp_path / "cache"
    rev = cache / "huggingface" / "org" / "tiny-gguf" / COMMIT
    partial = rev / ".gpustack" / "partial" / "tiny-Q4_K_M.gguf.partial"
    proc = subprocess.Popen(_cli(server, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 200_000):
        assert proc.poll() is None, "the download finished or failed before it could be killed"
        assert time.monotonic() < deadline, "no partial file appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (rev / "tiny-Q4_K_M.gguf").exists()  # a partial file is never presented as complete
    kept = partial.stat().st_size
    state.bytes_per_second = None
    done = subprocess.run(_cli(server, cache, "--json"), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert Path(result["paths"][0]).read_bytes() == GGUF_Q4
    gets = state.download_gets(KEY)
    assert gets[0].start == 0
    assert gets[-1].start >= kept > 0  # resumed from what the killed process had written
    assert result["downloaded_bytes"] < len(GGUF_Q4) + len(MMPROJ)
    assert result["downloaded_bytes"] == len(GGUF_Q4) - gets[-1].start + len(MMPROJ)


def test_cli_progress_and_errors(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    _, server = hf_hub
    cache = tmp_path / "cache"
    done = subprocess.run(_cli(server, cache), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert "tiny-Q4_K_M.gguf" in done.stderr.decode()  # the progress bar's row
    assert str(cache) in done.stdout.decode()
    missing = subprocess.run(
        [CLI, "download", "huggingface:org/missing", "--endpoint", server.url, "--cache-dir", str(cache)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "not found" in missing.stderr.decode()
    offline = subprocess.run(
        [CLI, "download", "huggingface:org/tiny-st", "--offline", "--cache-dir", str(cache)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert offline.returncode == 1
    assert "offline mode" in offline.stderr.decode()
