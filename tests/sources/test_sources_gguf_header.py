"""The range-capable GGUF header parser, checked against the gguf package's own reader."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import pytest
from model_files import make_gguf

from gpustack_core.models.gguf_header import (
    GGUFHeaderError,
    GGUFHeaderIncomplete,
    metadata_for_display,
    parse_gguf_header,
    read_gguf_header,
    read_gguf_header_growing,
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = make_gguf(n_embd=64, n_layers=3, vocab=2000, extra_kv={"test.answer": 42})
    path = tmp_path_factory.mktemp("gguf") / "sample.gguf"
    path.write_bytes(data)
    return path, data


def test_matches_gguf_reader(sample: tuple[Path, bytes]) -> None:
    path, _ = sample
    header = read_gguf_header(path)
    reader = gguf.GGUFReader(str(path))
    assert header.version == 3
    assert [t.name for t in header.tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(header.tensors, reader.tensors, strict=True):
        assert list(ours.shape) == [int(d) for d in theirs.shape]
        assert ours.ggml_type_name == theirs.tensor_type.name
        assert ours.size_bytes == int(theirs.n_bytes)
        assert header.header_bytes + ours.offset == int(theirs.data_offset)
    assert header.metadata["test.answer"] == 42
    assert header.metadata["llama.block_count"] == 3
    assert header.metadata["tokenizer.ggml.tokens"][1999] == "tok1999"
    assert header.alignment == 32


def test_growing_reads_only_the_header(sample: tuple[Path, bytes]) -> None:
    _, data = sample
    calls: list[tuple[int, int]] = []

    def read_range(start: int, length: int) -> bytes:
        calls.append((start, length))
        return data[start : start + length]

    header = read_gguf_header_growing(read_range, initial_bytes=256, file_size=len(data))
    fetched = sum(length for _, length in calls)
    assert fetched < 2 * header.header_bytes + 256  # never the tensor data
    assert [start for start, _ in calls] == [
        sum(n for _, n in calls[:i]) for i in range(len(calls))
    ]  # contiguous
    assert header.tensor_data_bytes == sum(t.size_bytes or 0 for t in header.tensors)


def test_incomplete_and_invalid_headers(sample: tuple[Path, bytes]) -> None:
    _, data = sample
    with pytest.raises(GGUFHeaderIncomplete) as info:
        parse_gguf_header(data[:100])
    assert info.value.needed_bytes > 100
    with pytest.raises(GGUFHeaderError, match="not a GGUF file"):
        parse_gguf_header(b"PK\x03\x04" + bytes(20))
    with pytest.raises(GGUFHeaderError, match="version 1 is not supported"):
        parse_gguf_header(b"GGUF" + struct.pack("<I", 1) + bytes(16))
    with pytest.raises(GGUFHeaderError, match="implausible"):
        parse_gguf_header(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0))
    with pytest.raises(GGUFHeaderError, match="truncated inside its header"):
        read_gguf_header_growing(lambda s, n: data[:300][s : s + n], initial_bytes=64, file_size=300)


def test_display_metadata_summarises_long_arrays(sample: tuple[Path, bytes]) -> None:
    path, _ = sample
    shown = metadata_for_display(read_gguf_header(path).metadata)
    assert shown["tokenizer.ggml.tokens"] == {"array_length": 2000}
    assert shown["general.architecture"] == "llama"
