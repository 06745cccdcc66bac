"""A reader-neutral description of a GGUF model: tensor infos plus header key/values.

Either a local file read with :class:`gguf.GGUFReader` (:func:`read_gguf_file`) or a header
fetched over HTTP range requests by a model source fills a :class:`GGUFModelInfo`; the
estimator only ever sees this description. Shapes are in ggml order (``ne[0]`` first, the
contiguous dimension), as GGUF stores them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpustack_core.errors import EstimationError

from ..models.ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = [
    "GGUFModelInfo",
    "TensorInfo",
    "ggml_row_bytes",
    "ggml_type_name",
    "info_from_metadata",
    "info_from_model_metadata",
    "read_gguf_file",
]

_LAYER_RE = re.compile(r"^blk\.(\d+)\.")
#: Arrays above this length are summarised as their length (token lists, merges, scores).
_MAX_ARRAY = 64


def ggml_type_name(ggml_type: int) -> str:
    """Name of a ggml type number (``8`` -> ``'Q8_0'``); ``'type<N>'`` when unknown."""
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"type{ggml_type}"


def ggml_row_bytes(ggml_type: int, n_elements: int) -> int:
    """Bytes of ``n_elements`` values of ``ggml_type`` (a whole number of blocks).

    Raises:
        EstimationError: unknown type, or ``n_elements`` not a multiple of the type's block size.
    """
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as exc:
        raise EstimationError(f"unknown ggml type {ggml_type}: update the 'gguf' package") from exc
    if n_elements % block:
        raise EstimationError(
            f"{n_elements} values of {ggml_type_name(ggml_type)} are not a whole number of "
            f"{block}-value blocks"
        )
    return n_elements // block * size


@dataclass(frozen=True)
class TensorInfo:
    """One tensor info of a GGUF file."""

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    n_bytes: int

    @property
    def n_elements(self) -> int:
        """Number of values."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def layer(self) -> int | None:
        """Block index for ``blk.N.*`` tensors, else ``None``."""
        m = _LAYER_RE.match(self.name)
        return int(m.group(1)) if m else None

    @property
    def type_name(self) -> str:
        """ggml type name, e.g. ``'Q4_K'``."""
        return ggml_type_name(self.ggml_type)


@dataclass(frozen=True)
class GGUFModelInfo:
    """Header key/values (large arrays reduced to their length) and tensor infos of a model.

    ``array_lengths`` keeps the length of every array key (``tokenizer.ggml.tokens`` -> n_vocab)
    even where ``kv`` dropped the values. ``file_size`` is the total on-disk size of all shards.
    """

    kv: Mapping[str, Any]
    tensors: tuple[TensorInfo, ...]
    array_lengths: Mapping[str, int] = field(default_factory=dict)
    file_size: int = 0

    @property
    def architecture(self) -> str:
        """``general.architecture`` (``'llama'`` when absent)."""
        return str(self.kv.get("general.architecture", "llama"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        """``{architecture}.{key}`` from the header, or ``default``."""
        return self.kv.get(f"{self.architecture}.{key}", default)

    def tensor(self, name: str) -> TensorInfo | None:
        """The tensor named ``name``, or ``None``."""
        for t in self.tensors:
            if t.name == name:
                return t
        return None

    @property
    def weight_bytes(self) -> int:
        """Sum of all tensor sizes."""
        return sum(t.n_bytes for t in self.tensors)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        return value.item()
    return value


def info_from_metadata(
    kv: Mapping[str, Any], tensors: Iterable[TensorInfo], file_size: int = 0
) -> GGUFModelInfo:
    """Build a description from plain key/values and tensors (any reader).

    Arrays longer than 64 entries are replaced by their length in ``array_lengths``, and so are
    arrays a source already summarised as ``{"array_length": N}``
    (:func:`gpustack_core.models.gguf_header.metadata_for_display`, what ``ModelMetadata`` carries).
    """
    small: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for key, value in kv.items():
        if isinstance(value, Mapping) and set(value) == {"array_length"}:
            lengths[key] = int(value["array_length"])
        elif isinstance(value, (list, tuple)):
            lengths[key] = len(value)
            if len(value) > _MAX_ARRAY:
                continue
            small[key] = [_plain(v) for v in value]
        else:
            small[key] = _plain(value)
    return GGUFModelInfo(kv=small, tensors=tuple(tensors), array_lengths=lengths, file_size=file_size)


def _split_paths(path: str) -> list[str]:
    """All shards of a split GGUF (``name-00001-of-00003.gguf``), or just ``path``."""
    m = re.match(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$", path)
    if not m:
        return [path]
    total = int(m.group(3))
    return [f"{m.group(1)}-{i:05d}-of-{total:05d}.gguf" for i in range(1, total + 1)]


def read_gguf_file(path: str | os.PathLike[str]) -> GGUFModelInfo:
    """Read the header and tensor infos of a local GGUF file (every shard of a split model).

    Tensor data is memory-mapped by ``gguf.GGUFReader`` but never read.

    Raises:
        EstimationError: the file is missing or not a valid GGUF file.
    """
    from gguf import GGUFReader

    kv: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    tensors: list[TensorInfo] = []
    size = 0
    for shard in _split_paths(os.fspath(path)):
        try:
            reader = GGUFReader(shard)
        except (OSError, ValueError) as exc:
            raise EstimationError(f"cannot read GGUF file {shard}: {exc}") from exc
        size += os.path.getsize(shard)
        for name, fld in reader.fields.items():
            if name.startswith("GGUF.") or name in kv:
                continue
            if len(fld.types) > 1 and len(fld.data) > _MAX_ARRAY:
                lengths[name] = len(fld.data)  # skip decoding large arrays (token lists)
                continue
            value = fld.contents()
            if isinstance(value, list):
                lengths[name] = len(value)
            kv[name] = value
        for t in reader.tensors:
            tensors.append(
                TensorInfo(
                    name=t.name,
                    ggml_type=int(t.tensor_type),
                    shape=tuple(int(d) for d in t.shape),
                    n_bytes=int(t.n_bytes),
                )
            )
    info = info_from_metadata(kv, tensors, file_size=size)
    return GGUFModelInfo(
        kv=info.kv, tensors=info.tensors, array_lengths={**info.array_lengths, **lengths}, file_size=size
    )


def info_from_model_metadata(metadata: Any) -> GGUFModelInfo | None:
    """Build a description from a source's ``ModelMetadata`` (header read by range requests).

    Uses ``metadata.gguf_metadata`` and ``metadata.gguf_tensors`` (items with ``name``,
    ``shape``, ``ggml_type``, ``size_bytes`` and ``file``); ``None`` when the source gave no
    tensor infos. ``file_size`` sums the files the tensors come from (every shard of the selected
    quantization), or every file when the tensors name none.
    """
    kv = getattr(metadata, "gguf_metadata", None)
    tensors = getattr(metadata, "gguf_tensors", None)
    if not kv or not tensors:
        return None
    infos = []
    for t in tensors:
        size = getattr(t, "size_bytes", None)
        shape = tuple(int(d) for d in t.shape)
        n = 1
        for d in shape:
            n *= d
        infos.append(
            TensorInfo(
                name=str(t.name),
                ggml_type=int(t.ggml_type),
                shape=shape,
                n_bytes=int(size) if size is not None else ggml_row_bytes(int(t.ggml_type), n),
            )
        )
    files = getattr(metadata, "files", None) or ()
    shards = {getattr(t, "file", None) for t in tensors} - {None}
    if shards and files:
        file_size = sum(f.size_bytes or 0 for f in files if f.path in shards)
    else:
        file_size = int(getattr(metadata, "total_size_bytes", 0) or 0)
    return info_from_metadata(kv, infos, file_size=file_size)
