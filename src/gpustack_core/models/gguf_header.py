"""Parsing the header of a GGUF file (key/values and tensor infos) from its leading bytes.

The parser works on a byte prefix, so a remote file's header can be read through HTTP range
requests: fetch the first N bytes, call :func:`parse_gguf_header`, and on
:class:`GGUFHeaderIncomplete` fetch more (at least ``needed_bytes``) and try again.
:func:`read_gguf_header_growing` does exactly that given a ``read_range`` function.

Supports GGUF versions 2 and 3 (little-endian), the ones llama.cpp has written since 2023.
Constants come from the ``gguf`` package (value types, ggml tensor types and their block sizes).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

if TYPE_CHECKING:
    from ..types import GGUFTensor


__all__ = [
    "GGUFHeader",
    "GGUFHeaderError",
    "GGUFHeaderIncomplete",
    "metadata_for_display",
    "parse_gguf_header",
    "read_gguf_header",
    "read_gguf_header_growing",
]

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
#: Arrays longer than this are summarised by :func:`metadata_for_display` (token lists are huge).
_DISPLAY_ARRAY_LIMIT = 64
_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
#: Sanity bounds; larger claims mean a corrupt or hostile header.
_MAX_COUNT = 1 << 32
_MAX_STRING = 1 << 30
_MAX_DIMS = 8


class GGUFHeaderError(ValueError):
    """The bytes are not a GGUF header this parser understands; the message says what is wrong."""


class GGUFHeaderIncomplete(GGUFHeaderError):
    """The prefix ends inside the header; fetch at least ``needed_bytes`` bytes and parse again."""

    def __init__(self, needed_bytes: int) -> None:
        super().__init__(f"GGUF header continues past the bytes given; need at least {needed_bytes}")
        self.needed_bytes = needed_bytes


@dataclass(frozen=True)
class GGUFHeader:
    """A parsed GGUF header: version, key/values, tensor infos and where tensor data starts."""

    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensor, ...]
    alignment: int
    header_bytes: int = field(metadata={"doc": "bytes before the (aligned) tensor data section"})

    @property
    def tensor_data_bytes(self) -> int:
        """Sum of the sizes of tensors whose type is known."""
        return sum(t.size_bytes or 0 for t in self.tensors)


class _Reader:
    """Cursor over a byte prefix that raises :class:`GGUFHeaderIncomplete` past its end."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise GGUFHeaderIncomplete(self.pos + n)

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > _MAX_STRING:
            raise GGUFHeaderError(f"GGUF string of {length} bytes at offset {self.pos - 8} is implausible")
        self.need(length)
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def strings(self, count: int) -> list[str]:
        """``count`` strings in a row (token lists: the bulk of most headers), without method calls."""
        data, pos, size = self.data, self.pos, len(self.data)
        unpack_from = struct.unpack_from
        out: list[str] = []
        append = out.append
        for _ in range(count):
            if pos + 8 > size:
                raise GGUFHeaderIncomplete(pos + 8)
            (length,) = unpack_from("<Q", data, pos)
            if length > _MAX_STRING:
                raise GGUFHeaderError(f"GGUF string of {length} bytes at offset {pos} is implausible")
            pos += 8
            end = pos + length
            if end > size:
                raise GGUFHeaderIncomplete(end)
            append(str(data[pos:end], "utf-8", "replace"))
            pos = end
        self.pos = pos
        return out

    def value(self, value_type: int) -> Any:
        if value_type in _SCALARS:
            return self.unpack(_SCALARS[value_type])
        if value_type == GGUFValueType.STRING:
            return self.string()
        if value_type == GGUFValueType.ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if count > _MAX_COUNT:
                raise GGUFHeaderError(f"GGUF array of {count} items is implausible")
            if item_type in _SCALARS:
                fmt = _SCALARS[item_type]
                size = struct.calcsize(fmt)
                self.need(size * count)
                items = list(struct.unpack_from(f"<{count}{fmt[1]}", self.data, self.pos))
                self.pos += size * count
                return items
            if item_type == GGUFValueType.STRING:
                return self.strings(count)
            return [self.value(item_type) for _ in range(count)]
        raise GGUFHeaderError(f"unknown GGUF value type {value_type} at offset {self.pos - 4}")


def _tensor_size(type_id: int, shape: tuple[int, ...]) -> int | None:
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError):
        return None
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block_size * type_size


def _type_name(type_id: int) -> str:
    try:
        return GGMLQuantizationType(type_id).name
    except ValueError:
        return f"UNKNOWN_{type_id}"


def parse_gguf_header(prefix: bytes | bytearray | memoryview, file: str | None = None) -> GGUFHeader:
    """Parse a GGUF header from the file's leading bytes.

    Parameters:
        prefix: the first bytes of the file (any length).
        file: the file name recorded on each tensor info (split shards are told apart by it).

    Raises:
        GGUFHeaderIncomplete: ``prefix`` ends inside the header (``needed_bytes`` says how much
            more is certainly needed; more may be needed after that).
        GGUFHeaderError: not GGUF, an unsupported version, or an implausible header.
    """
    from ..types.models import GGUFTensor

    reader = _Reader(prefix)
    reader.need(4)
    if bytes(reader.data[:4]) != _MAGIC:
        raise GGUFHeaderError(f"not a GGUF file: magic is {bytes(reader.data[:4])!r}, expected b'GGUF'")
    reader.pos = 4
    version = reader.unpack("<I")
    if version not in (2, 3):
        hint = " (big-endian files are not supported)" if version > 0xFFFF else ""
        raise GGUFHeaderError(f"GGUF version {version} is not supported (2 and 3 are){hint}")
    tensor_count = reader.unpack("<Q")
    kv_count = reader.unpack("<Q")
    if tensor_count > _MAX_COUNT or kv_count > _MAX_COUNT:
        raise GGUFHeaderError(f"GGUF header claims {tensor_count} tensors and {kv_count} keys: implausible")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = reader.string()
        metadata[key] = reader.value(reader.unpack("<I"))
    tensors: list[GGUFTensor] = []
    for _ in range(tensor_count):
        name = reader.string()
        n_dims = reader.unpack("<I")
        if n_dims > _MAX_DIMS:
            raise GGUFHeaderError(f"GGUF tensor {name!r} claims {n_dims} dimensions: implausible")
        shape = tuple(int(reader.unpack("<Q")) for _ in range(n_dims))
        type_id = int(reader.unpack("<I"))
        offset = int(reader.unpack("<Q"))
        tensors.append(
            GGUFTensor(
                name=name,
                shape=shape,
                ggml_type=type_id,
                ggml_type_name=_type_name(type_id),
                offset=offset,
                size_bytes=_tensor_size(type_id, shape),
                file=file,
            )
        )
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise GGUFHeaderError(f"GGUF general.alignment {alignment!r} is not a positive integer")
    header_bytes = -(-reader.pos // alignment) * alignment
    return GGUFHeader(
        version=version,
        metadata=metadata,
        tensors=tuple(tensors),
        alignment=alignment,
        header_bytes=header_bytes,
    )


def read_gguf_header_growing(
    read_range: Callable[[int, int], bytes],
    *,
    file: str | None = None,
    initial_bytes: int = 1 << 20,
    max_bytes: int = 512 << 20,
    file_size: int | None = None,
) -> GGUFHeader:
    """Read a GGUF header through ``read_range(start, length)``, fetching more until it parses.

    Starts with ``initial_bytes`` and at least doubles the prefix each round (only the missing
    bytes are fetched), so a header of H bytes costs about log2(H / initial_bytes) + 1 requests.

    Raises:
        GGUFHeaderError: not GGUF, or the header is larger than ``max_bytes``.
    """
    buffer = bytearray()
    want = initial_bytes
    while True:
        if file_size is not None:
            want = min(want, file_size)
        if want > len(buffer):
            chunk = read_range(len(buffer), want - len(buffer))
            if not chunk:
                raise GGUFHeaderError(
                    f"GGUF file {file or ''} ended after {len(buffer)} bytes inside its header"
                )
            buffer += chunk
        try:
            return parse_gguf_header(buffer, file=file)
        except GGUFHeaderIncomplete as exc:
            if file_size is not None and len(buffer) >= file_size:
                raise GGUFHeaderError(f"GGUF file {file or ''} is truncated inside its header") from exc
            want = max(exc.needed_bytes, len(buffer) * 2)
            if want > max_bytes:
                raise GGUFHeaderError(
                    f"GGUF header of {file or 'the file'} is larger than {max_bytes} bytes; "
                    "refusing to read more"
                ) from exc


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Read the header of a local GGUF file without reading its tensor data."""
    size = Path(path).stat().st_size
    with open(path, "rb") as handle:

        def read_range(start: int, length: int) -> bytes:
            handle.seek(start)
            return handle.read(length)

        return read_gguf_header_growing(read_range, file=Path(path).name, file_size=size)


def metadata_for_display(metadata: dict[str, Any], array_limit: int = _DISPLAY_ARRAY_LIMIT) -> dict[str, Any]:
    """Key/values with long arrays (token lists, merges) replaced by ``{"array_length": N}``.

    This is what :class:`~gpustack_core.types.ModelMetadata` carries in ``gguf_metadata``: every
    scalar as is, short arrays as lists, long arrays by their length only.
    """
    result: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, list) and len(value) > array_limit:
            result[key] = {"array_length": len(value)}
        else:
            result[key] = value
    return result
