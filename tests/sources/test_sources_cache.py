"""The shared cache on its own: failures that are hard to cause through a hub."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import GGUF_Q4
from fake_hubs import COMMIT, HubServer, HubState

from gpustack_core.errors import DownloadError, ModelNotFoundError
from gpustack_core.models import _transfer as transfer_module
from gpustack_core.models import cache as cache_module
from gpustack_core.models.cache import FileRequest, ModelCache

KEY = "org/tiny-gguf/tiny-Q4_K_M.gguf"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _request(server: HubServer, sha256: str | None = None) -> FileRequest:
    return FileRequest(
        path="tiny-Q4_K_M.gguf",
        url=f"{server.url}/org/tiny-gguf/resolve/{COMMIT}/tiny-Q4_K_M.gguf",
        size_bytes=len(GGUF_Q4),
        sha256=sha256,
    )


def test_network_failure_keeps_partial_and_next_run_resumes(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    cache = ModelCache(tmp_path)
    state.cut_after[KEY] = 400_000
    with httpx.Client() as client, pytest.raises(DownloadError, match=r"127\.0\.0\.1.*byte 400000.*resume"):
        cache.ensure_files(
            "huggingface", "org/tiny-gguf", COMMIT, [_request(server)], client=client, retries=0
        )
    assert not (cache.revision_dir("huggingface", "org/tiny-gguf", COMMIT) / "tiny-Q4_K_M.gguf").exists()
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(
            "huggingface", "org/tiny-gguf", COMMIT, [_request(server)], client=client, retries=0
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4) - 400_000
    assert [g.start for g in state.download_gets(KEY)] == [0, 400_000]


def test_server_without_range_support_restarts_the_file(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    state.cut_after[KEY] = 400_000
    state.ignore_range = True
    with httpx.Client() as client:
        paths, transferred = ModelCache(tmp_path).ensure_files(
            "huggingface", "org/tiny-gguf", COMMIT, [_request(server, _digest(GGUF_Q4))], client=client
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4  # the 200 body replaced the partial, not appended
    assert transferred == 400_000 + len(GGUF_Q4)


def test_not_enough_space_is_refused_before_downloading(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, server = hf_hub
    monkeypatch.setattr(cache_module, "free_bytes", lambda path: 1000)
    with (
        httpx.Client() as client,
        pytest.raises(DownloadError, match=rf"{len(GGUF_Q4)} bytes needed, 1000 bytes free"),
    ):
        ModelCache(tmp_path).ensure_files(
            "huggingface", "org/tiny-gguf", COMMIT, [_request(server)], client=client
        )
    assert state.download_gets(KEY) == []


def test_disk_full_while_writing_says_how_much(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server = hf_hub
    room = [100_000]
    real_write_at = transfer_module.write_at

    def full_disk(fd: int, data: Any, offset: int) -> None:
        if len(data) > room[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        room[0] -= len(data)
        real_write_at(fd, data, offset)

    monkeypatch.setattr(transfer_module, "write_at", full_disk)
    with (
        httpx.Client() as client,
        pytest.raises(DownloadError, match=r"disk full .* more bytes needed, \d+ free"),
    ):
        ModelCache(tmp_path).ensure_files(
            "huggingface", "org/tiny-gguf", COMMIT, [_request(server)], client=client
        )


def test_hash_mismatch_is_not_kept(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    _, server = hf_hub
    cache = ModelCache(tmp_path)
    with httpx.Client() as client, pytest.raises(DownloadError, match=r"sha256 .* does not match"):
        cache.ensure_files(
            "huggingface", "org/tiny-gguf", COMMIT, [_request(server, "0" * 64)], client=client
        )
    rev = cache.revision_dir("huggingface", "org/tiny-gguf", COMMIT)
    assert not (rev / "tiny-Q4_K_M.gguf").exists()
    assert not list((rev / ".gpustack" / "partial").iterdir())


def test_layout_refs_and_bad_ids(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    assert (
        cache.revision_dir("huggingface", "org/m", "refs/pr/1")
        == tmp_path / "huggingface" / "org" / "m" / "refs%2Fpr%2F1"
    )
    cache.write_ref("huggingface", "org/m", "main", COMMIT)
    assert cache.read_ref("huggingface", "org/m", "main") == COMMIT
    assert cache.read_ref("huggingface", "org/m", "dev") is None
    with pytest.raises(ModelNotFoundError, match="cannot be used as a cache path"):
        cache.model_dir("huggingface", "../etc")
    with pytest.raises(ModelNotFoundError, match="cannot be used as a cache directory"):
        cache.revision_dir("huggingface", "org/m", "..")
