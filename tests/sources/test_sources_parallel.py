"""Parallel range downloads into the cache: ranges, resume after a cut or a kill, verification.

Ranges are made small (64 KiB) so a 1.3 MB file takes the parallel path that large models take.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from conftest import GGUF_Q4
from fake_hubs import COMMIT, HubServer, HubState
from httpcore._sync.http11 import HTTP11Connection

from gpustack_core.errors import DownloadError
from gpustack_core.models._transfer import READ_BYTES, widen_reads
from gpustack_core.models.cache import FileRequest, ModelCache
from gpustack_core.types import DownloadProgress

KEY = "org/tiny-gguf/tiny-Q4_K_M.gguf"
RANGE = 64 << 10
MODEL = ("huggingface", "org/tiny-gguf", COMMIT)


def _request(server: HubServer, sha256: str | None = None) -> FileRequest:
    return FileRequest(
        path="tiny-Q4_K_M.gguf",
        url=f"{server.url}/org/tiny-gguf/resolve/{COMMIT}/tiny-Q4_K_M.gguf",
        size_bytes=len(GGUF_Q4),
        sha256=sha256,
    )


def _gets(state: HubState) -> list[tuple[int, int | None]]:
    with state.lock:
        return [(g.start, g.end) for g in state.gets if g.key == KEY and g.method == "GET"]


def _partial(cache: ModelCache) -> Path:
    return cache.revision_dir(*MODEL) / ".gpustack" / "partial" / "tiny-Q4_K_M.gguf.partial"


def test_large_file_comes_in_parallel_ranges_and_is_verified(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE)
    seen: list[DownloadProgress] = []
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(
            *MODEL, [_request(server, digest)], client=client, progress=seen.append
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4)
    expected = [(s, min(s + RANGE, len(GGUF_Q4)) - 1) for s in range(0, len(GGUF_Q4), RANGE)]
    assert sorted(_gets(state)) == expected  # every byte asked for once, in bounded ranges
    assert seen[-1].done
    assert seen[-1].downloaded_bytes == len(GGUF_Q4)
    assert not list(_partial(cache).parent.iterdir())


def test_cut_range_keeps_the_valid_prefix_and_resumes_from_it(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE)
    state.cut_range_at[KEY] = 300_000
    with httpx.Client() as client, pytest.raises(DownloadError, match=r"resume"):
        cache.ensure_files(*MODEL, [_request(server)], client=client, retries=0)
    partial = _partial(cache)
    kept = partial.read_bytes()
    assert 0 < len(kept) <= 300_000
    assert kept == GGUF_Q4[: len(kept)]  # only the valid prefix is left: no holes, no bytes after one
    assert not partial.with_name(partial.name + ".prefix").exists()
    state.gets.clear()
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(*MODEL, [_request(server, digest)], client=client)
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4) - len(kept)
    assert min(start for start, _ in _gets(state)) == len(kept)


def test_cut_range_is_retried_within_one_call(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    state, server = hf_hub
    state.cut_range_at[KEY] = 700_000
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, _ = ModelCache(tmp_path, connections=3, range_bytes=RANGE).ensure_files(
            *MODEL, [_request(server, digest)], client=client, retries=2
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4


def test_partial_left_by_a_killed_parallel_fetch_resumes_from_the_recorded_prefix(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    """A kill leaves bytes beyond holes; the ``.prefix`` record says what is valid."""
    state, server = hf_hub
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE)
    partial = _partial(cache)
    partial.parent.mkdir(parents=True)
    valid = 3 * RANGE
    # the ranges after the prefix: one hole of zeros, then bytes that were written
    partial.write_bytes(GGUF_Q4[:valid] + bytes(RANGE) + GGUF_Q4[4 * RANGE : 6 * RANGE])
    partial.with_name(partial.name + ".prefix").write_text(str(valid))
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(*MODEL, [_request(server)], client=client)
    # no sha256 was published: only the prefix record keeps the hole out of the result
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4) - valid
    assert min(start for start, _ in _gets(state)) == valid


def test_corrupt_body_fails_verification_and_is_not_kept(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    state.corrupt.add(KEY)
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE)
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client, pytest.raises(DownloadError, match=r"sha256 .* does not match"):
        cache.ensure_files(*MODEL, [_request(server, digest)], client=client)
    assert not (cache.revision_dir(*MODEL) / "tiny-Q4_K_M.gguf").exists()
    assert not list(_partial(cache).parent.iterdir())


def test_server_without_range_support_is_read_as_one_stream(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    state.ignore_range = True
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, transferred = ModelCache(tmp_path, connections=4, range_bytes=RANGE).ensure_files(
            *MODEL, [_request(server, digest)], client=client
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4)
    assert len(_gets(state)) == 1


def test_http_error_on_a_later_range_is_reported(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    _, server = hf_hub
    request = _request(server)
    # a size larger than the file: the ranges past its end are refused with 416
    bigger = FileRequest(path=request.path, url=request.url, size_bytes=len(GGUF_Q4) + 4 * RANGE)
    cache = ModelCache(tmp_path, connections=2, range_bytes=RANGE)
    with httpx.Client() as client, pytest.raises(DownloadError):
        cache.ensure_files(*MODEL, [bigger], client=client, retries=0)
    partial = _partial(cache)
    assert partial.read_bytes() == GGUF_Q4[: partial.stat().st_size]


def test_reads_are_widened_on_this_connection_only(hf_hub: tuple[HubState, HubServer]) -> None:
    """A body is received in 1 MiB socket reads on the response's own connection; the class and
    the parsed bytes are unchanged."""
    _, server = hf_hub
    default = HTTP11Connection.READ_NUM_BYTES
    with httpx.Client() as client, client.stream("GET", _request(server).url) as response:
        assert widen_reads(response) is True  # fails when an httpx/httpcore upgrade moves the connection
        connection = response.stream._stream._httpcore_stream._stream._connection  # type: ignore[attr-defined]
        assert isinstance(connection, HTTP11Connection)
        assert connection.READ_NUM_BYTES == READ_BYTES > default
        assert response.read() == GGUF_Q4
    assert default == HTTP11Connection.READ_NUM_BYTES


def test_reads_stay_as_they_are_on_another_transport() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"body"))
    with (
        httpx.Client(transport=transport) as client,
        client.stream("GET", "http://example.invalid/") as response,
    ):
        assert widen_reads(response) is False
        assert response.read() == b"body"
