"""Parallel range downloads into the cache: the split decision, ranges, resume after a cut or a
kill, verification, and bodies read from the socket.

Ranges are made small (64 KiB) so a 1.3 MB file takes the parallel path that large models take;
the split policy is given (``ALWAYS``, ``NEVER``) so no test depends on how fast this machine is.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import GGUF_Q4
from fake_hubs import COMMIT, HubServer, HubState
from httpcore._sync.http11 import HTTP11Connection

from gpustack_core.errors import DownloadError
from gpustack_core.models._transfer import (
    READ_BYTES,
    StreamSample,
    _body_socket,
    _writeback_starter,
    network_bound,
    widen_reads,
)
from gpustack_core.models.cache import FileRequest, ModelCache
from gpustack_core.types import DownloadProgress

KEY = "org/tiny-gguf/tiny-Q4_K_M.gguf"
RANGE = 64 << 10
MODEL = ("huggingface", "org/tiny-gguf", COMMIT)


def ALWAYS(sample: StreamSample) -> bool:
    return True


def NEVER(sample: StreamSample) -> bool:
    return False


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
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=ALWAYS)
    seen: list[DownloadProgress] = []
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(
            *MODEL, [_request(server, digest)], client=client, progress=seen.append
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4)
    # the first connection asks for everything and stops at a range boundary; ranges cover the rest
    first, *ranges = sorted(_gets(state))
    assert first == (0, None)
    lead_end = ranges[0][0]
    assert lead_end % RANGE == 0
    assert 0 < lead_end < len(GGUF_Q4) - RANGE
    expected = [(s, min(s + RANGE, len(GGUF_Q4)) - 1) for s in range(lead_end, len(GGUF_Q4), RANGE)]
    assert ranges == expected  # every byte after the first connection's part asked for once
    assert seen[-1].done
    assert seen[-1].downloaded_bytes == len(GGUF_Q4)
    assert not list(_partial(cache).parent.iterdir())


def _fails_then_resumes_from_the_valid_prefix(
    state: HubState,
    server: HubServer,
    cache: ModelCache,
    most_kept: int,
    after_failure: Callable[[], None] = lambda: None,
) -> int:
    """One fetch fails on the cut (``after_failure`` checks what it did); only a valid prefix (no
    holes, no prefix marker) is left, and the next fetch resumes from it and verifies. Returns the
    bytes kept."""
    with httpx.Client() as client, pytest.raises(DownloadError, match=r"resume"):
        cache.ensure_files(*MODEL, [_request(server)], client=client, retries=0)
    after_failure()
    partial = _partial(cache)
    kept = partial.read_bytes()
    assert 0 < len(kept) <= most_kept
    assert kept == GGUF_Q4[: len(kept)]  # only the valid prefix is left: no holes, no bytes after one
    assert not partial.with_name(partial.name + ".prefix").exists()
    state.gets.clear()
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(*MODEL, [_request(server, digest)], client=client)
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4) - len(kept)
    return len(kept)


def test_cut_range_keeps_the_valid_prefix_and_resumes_from_it(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=ALWAYS)
    state.cut_range_at[KEY] = 300_000
    kept = _fails_then_resumes_from_the_valid_prefix(state, server, cache, 300_000)
    assert min(start for start, _ in _gets(state)) == kept


def test_cut_range_is_retried_within_one_call(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    state, server = hf_hub
    state.cut_range_at[KEY] = 700_000
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    with httpx.Client() as client:
        paths, _ = ModelCache(tmp_path, connections=3, range_bytes=RANGE, split=ALWAYS).ensure_files(
            *MODEL, [_request(server, digest)], client=client, retries=2
        )
    assert Path(paths[0]).read_bytes() == GGUF_Q4


def test_partial_left_by_a_killed_parallel_fetch_resumes_from_the_recorded_prefix(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    """A kill leaves bytes beyond holes; the ``.prefix`` record says what is valid."""
    state, server = hf_hub
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=ALWAYS)
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
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=ALWAYS)
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
        paths, transferred = ModelCache(
            tmp_path, connections=4, range_bytes=RANGE, split=ALWAYS
        ).ensure_files(*MODEL, [_request(server, digest)], client=client)
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4)
    assert len(_gets(state)) == 1


def test_http_error_on_a_later_range_is_reported(hf_hub: tuple[HubState, HubServer], tmp_path: Path) -> None:
    _, server = hf_hub
    request = _request(server)
    # a size larger than the file: the ranges past its end are refused with 416
    bigger = FileRequest(path=request.path, url=request.url, size_bytes=len(GGUF_Q4) + 4 * RANGE)
    cache = ModelCache(tmp_path, connections=2, range_bytes=RANGE, split=ALWAYS)
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


def test_first_connection_kept_whole_when_the_policy_says_so(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    """A connection that is not worth splitting (loopback, a LAN: the receiver is the limit) is
    read to the end: one request, verified as any other."""
    state, server = hf_hub
    samples: list[StreamSample] = []

    def record(sample: StreamSample) -> bool:
        samples.append(sample)
        return False

    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=record)
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(*MODEL, [_request(server, digest)], client=client)
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    assert transferred == len(GGUF_Q4)
    assert _gets(state) == [(0, None)]  # asked as a range, so a split would have been possible
    assert len(samples) == 1  # decided once, after at least one range of the body
    assert samples[0].received_bytes >= RANGE
    assert samples[0].wall_s > 0
    assert samples[0].cpu_s >= 0


def test_one_connection_or_a_small_file_never_asks_the_policy(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    asked: list[StreamSample] = []
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    for index, cache in enumerate(
        [
            ModelCache(tmp_path / "one", connections=1, range_bytes=RANGE, split=asked.append),  # type: ignore[arg-type]
            ModelCache(tmp_path / "small", connections=4, split=asked.append),  # type: ignore[arg-type]
        ]
    ):
        with httpx.Client() as client:
            paths, _ = cache.ensure_files(*MODEL, [_request(server, digest)], client=client)
        assert Path(paths[0]).read_bytes() == GGUF_Q4
        assert _gets(state)[index] == (0, None)
    assert asked == []
    assert len(_gets(state)) == 2


def test_default_policy_splits_a_connection_that_waited_on_the_network() -> None:
    waiting = StreamSample(received_bytes=16 << 20, wall_s=1.0, cpu_s=0.1)  # a remote hub's pace
    busy = StreamSample(received_bytes=16 << 20, wall_s=0.05, cpu_s=0.04)  # loopback: the CPU is the limit
    assert network_bound(waiting) is True
    assert network_bound(busy) is False


def test_large_bodies_are_read_from_the_socket_and_the_client_stays_usable(
    hf_hub: tuple[HubState, HubServer],
) -> None:
    """A large plain-HTTP body bypasses h11 (read from the socket); its connection is closed, not
    returned to the pool half-read, so the next request on the client is answered correctly."""
    _, server = hf_hub
    url = _request(server).url
    with httpx.Client() as client:
        with client.stream("GET", url) as response:
            found = _body_socket(response, 64 << 10)
            assert found is not None
            assert found[1] == len(GGUF_Q4)
        with client.stream("GET", url) as response:
            assert _body_socket(response, READ_BYTES) is None  # 1.3 MB is under four 1 MiB reads
        with client.stream("GET", url, headers={"Range": "bytes=0-99"}) as response:
            assert _body_socket(response, 64 << 10) is None  # small
            assert response.read() == GGUF_Q4[:100]
        cache_client_bytes = client.get(url, headers={"Range": "bytes=100-199"}).content
    assert cache_client_bytes == GGUF_Q4[100:200]


def test_a_body_read_from_the_socket_and_cut_resumes(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    state, server = hf_hub
    state.cut_after[KEY] = 500_000  # the one open-ended request is cut, after h11's first piece
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=NEVER)
    with httpx.Client() as client:
        paths, transferred = cache.ensure_files(*MODEL, [_request(server, digest)], client=client, retries=1)
    assert transferred == len(GGUF_Q4)  # what the first request wrote is not fetched again
    assert Path(paths[0]).read_bytes() == GGUF_Q4
    gets = _gets(state)
    assert gets[0] == (0, None)
    assert gets[1][1] is None
    assert 0 < gets[1][0] <= 500_000  # the second request resumed from what the first wrote


def test_reads_from_the_socket_are_left_alone_on_another_transport() -> None:
    body = bytes(1 << 20)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with (
        httpx.Client(transport=transport) as client,
        client.stream("GET", "http://example.invalid/") as response,
    ):
        assert _body_socket(response, 64 << 10) is None
        assert response.read() == body


@pytest.mark.parametrize("split", [ALWAYS, NEVER])
def test_one_fsync_per_file_at_the_end(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: object
) -> None:
    _, server = hf_hub
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    digest = hashlib.sha256(GGUF_Q4).hexdigest()
    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=split)  # type: ignore[arg-type]
    with httpx.Client() as client:
        cache.ensure_files(*MODEL, [_request(server, digest)], client=client)
    assert synced == [len(GGUF_Q4)]  # once, with every byte written


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_writeback_of_hashed_blocks_is_started_with_sync_file_range(tmp_path: Path) -> None:
    start = _writeback_starter()
    assert start is not None
    path = tmp_path / "f"
    path.write_bytes(bytes(1 << 20))
    fd = os.open(path, os.O_RDONLY)  # the hasher's own read-only descriptor
    try:
        assert start(fd, 0, 1 << 20, 2) == 0
    finally:
        os.close(fd)


def test_first_connection_cut_after_the_split_keeps_the_valid_prefix(
    hf_hub: tuple[HubState, HubServer], tmp_path: Path
) -> None:
    """The first connection fails while the ranges after it run: the ranges stop, the file is cut
    back to what that connection wrote, and the next call resumes from there."""
    state, server = hf_hub
    state.cut_after[KEY] = 100_000  # open-ended requests only: the first connection, after the split
    splits: list[StreamSample] = []

    def split(sample: StreamSample) -> bool:
        splits.append(sample)
        return True

    cache = ModelCache(tmp_path, connections=4, range_bytes=RANGE, split=split)

    def it_had_split() -> None:
        assert len(splits) == 1  # the cut comes after the first range's 64 KiB

    _fails_then_resumes_from_the_valid_prefix(state, server, cache, 100_000, it_had_split)
