"""Recognising model file formats from names and leading bytes, and reading safetensors headers."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..types import ModelFormat

if TYPE_CHECKING:
    from ..types import ModelFile


__all__ = [
    "GGUF_MAGIC",
    "SAFETENSORS_MAX_HEADER_BYTES",
    "format_from_name",
    "model_format_of",
    "parse_safetensors_header",
    "read_safetensors_header",
    "sniff_format",
]

GGUF_MAGIC = b"GGUF"
#: Upper bound on a safetensors JSON header; larger claims are treated as corrupt.
SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024


def format_from_name(name: str) -> ModelFormat:
    """Format implied by a file name's extension."""
    lower = name.lower()
    if lower.endswith(".gguf"):
        return ModelFormat.GGUF
    if lower.endswith(".safetensors"):
        return ModelFormat.SAFETENSORS
    return ModelFormat.OTHER


def model_format_of(files: Sequence[ModelFile]) -> ModelFormat:
    """A model's format from its files: GGUF if any file is GGUF, else safetensors if any is, else other."""
    formats = {f.format for f in files}
    for candidate in (ModelFormat.GGUF, ModelFormat.SAFETENSORS):
        if candidate in formats:
            return candidate
    return ModelFormat.OTHER


def sniff_format(head: bytes) -> ModelFormat:
    """Format from a file's first bytes (at least 16 are needed for safetensors)."""
    if head[:4] == GGUF_MAGIC:
        return ModelFormat.GGUF
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= SAFETENSORS_MAX_HEADER_BYTES and head[8:9] == b"{":
            return ModelFormat.SAFETENSORS
    return ModelFormat.OTHER


def parse_safetensors_header(prefix: bytes) -> dict[str, Any]:
    """Parse a safetensors header from the file's first ``8 + N`` bytes.

    Raises ``ValueError`` saying what is wrong when the bytes are not a safetensors header.
    """
    if len(prefix) < 8:
        raise ValueError("safetensors header: fewer than 8 bytes")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > SAFETENSORS_MAX_HEADER_BYTES:
        raise ValueError(f"safetensors header: declared length {length} bytes is implausible")
    if len(prefix) < 8 + length:
        raise ValueError(f"safetensors header: need {8 + length} bytes, got {len(prefix)}")
    try:
        header = json.loads(prefix[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"safetensors header: not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ValueError("safetensors header: JSON is not an object")
    return header


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """Read the header of a local safetensors file without reading its tensors."""
    with open(path, "rb") as handle:
        first = handle.read(8)
        if len(first) < 8:
            raise ValueError(f"{path}: too short to be safetensors")
        (length,) = struct.unpack("<Q", first)
        if length > SAFETENSORS_MAX_HEADER_BYTES:
            raise ValueError(f"{path}: declared safetensors header length {length} is implausible")
        return parse_safetensors_header(first + handle.read(length))
