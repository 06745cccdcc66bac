"""Model references, files and metadata as model-source plugins report them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..errors import InvalidModelReferenceError
from ._base import Bytes, ValueModel
from ._enums import ModelCategory, ModelFormat

__all__ = [
    "DownloadProgress",
    "DownloadResult",
    "GGUFTensor",
    "ModelCategory",
    "ModelFile",
    "ModelFormat",
    "ModelMetadata",
    "ModelRef",
    "PeerCache",
    "SourceOptions",
]


class ModelRef(ValueModel):
    """A reference to a model at a source.

    Written as text: ``SOURCE:ID[@REVISION][#SELECTOR]``, for example
    ``huggingface:Qwen/Qwen2.5-0.5B-Instruct-GGUF#Q4_K_M``, ``local:/models/tiny.gguf`` or
    ``ollama:llama3.2:1b``. ``selector`` is a GGUF quantization name (``Q4_K_M``) or a glob on file
    names (``*.gguf``); it narrows file selection.
    """

    source: str = Field(min_length=1, description="model-source plugin name, e.g. 'huggingface'")
    id: str = Field(min_length=1, description="repository id, path or library name at the source")
    revision: str | None = Field(default=None, description="branch, tag or commit; None: the default")
    selector: str | None = Field(default=None, description="quantization name or file glob")

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``SOURCE:ID[@REVISION][#SELECTOR]``.

        Raises :class:`~gpustack_core.errors.InvalidModelReferenceError` naming the expected form.
        """
        source, sep, rest = text.strip().partition(":")
        if not sep or not source or not rest:
            raise InvalidModelReferenceError(
                f"invalid model reference {text!r}: expected SOURCE:ID[@REVISION][#SELECTOR], "
                "e.g. 'huggingface:Qwen/Qwen2.5-0.5B-Instruct-GGUF#Q4_K_M' or 'local:/models/m.gguf'"
            )
        selector: str | None = None
        if "#" in rest:
            rest, _, selector = rest.rpartition("#")
        revision: str | None = None
        if "@" in rest and source != "local":
            rest, _, revision = rest.rpartition("@")
        if not rest:
            raise InvalidModelReferenceError(f"invalid model reference {text!r}: the ID part is empty")
        return cls(source=source, id=rest, revision=revision or None, selector=selector or None)

    def __str__(self) -> str:
        text = f"{self.source}:{self.id}"
        if self.revision:
            text += f"@{self.revision}"
        if self.selector:
            text += f"#{self.selector}"
        return text


class ModelFile(ValueModel):
    """One file of a model at its source."""

    path: str = Field(description="path relative to the model's root, '/'-separated")
    size_bytes: Bytes | None = None
    sha256: str | None = Field(default=None, description="hex digest where the source publishes one")
    format: ModelFormat = ModelFormat.OTHER


class GGUFTensor(ValueModel):
    """One tensor described in a GGUF header (read without the tensor data)."""

    name: str
    shape: tuple[int, ...] = Field(description="dimensions as stored in GGUF (fastest-varying first)")
    ggml_type: int = Field(description="ggml tensor type id (gguf.GGMLQuantizationType value)")
    ggml_type_name: str = Field(description="ggml tensor type name, e.g. 'Q4_K', 'F16'")
    offset: Bytes = Field(description="offset of the data relative to the file's tensor-data section")
    size_bytes: Bytes | None = Field(default=None, description="data size; None for an unknown type")
    file: str | None = Field(default=None, description="model file (split shard) holding the tensor")


class ModelMetadata(ValueModel):
    """What a source knows of a model without downloading its weights."""

    ref: ModelRef
    format: ModelFormat
    files: tuple[ModelFile, ...]
    commit: str | None = Field(default=None, description="resolved revision, where the source has one")
    config: dict[str, Any] | None = Field(default=None, description="config.json, where present")
    gguf_metadata: dict[str, Any] | None = Field(default=None, description="GGUF header key/values")
    safetensors_headers: dict[str, Any] | None = Field(default=None, description="file -> header")
    category: ModelCategory | None = None
    gguf_tensors: tuple[GGUFTensor, ...] | None = Field(
        default=None, description="tensor infos of the selected GGUF (every split shard), header only"
    )

    @property
    def total_size_bytes(self) -> int:
        """Sum of the known file sizes."""
        return sum(f.size_bytes or 0 for f in self.files)


class PeerCache(ValueModel):
    """Another worker's model cache, served over HTTP (``GET <url>/<source>/<model>/<revision>/<file>``)."""

    url: str = Field(description="base URL, e.g. 'http://10.0.0.2:10150/models/cache'")
    headers: dict[str, str] = Field(default_factory=dict, description="e.g. the worker-API token")


class SourceOptions(ValueModel):
    """Options every model-source plugin honours."""

    cache_dir: str = Field(description="root of the shared model cache")
    offline: bool = Field(default=False, description="use the cache only; never touch the network")
    token: str | None = Field(default=None, description="access token for gated or private models")
    endpoint: str | None = Field(default=None, description="override of the source's base URL")
    timeout_s: float = Field(default=30.0, gt=0)
    peers: tuple[PeerCache, ...] = Field(
        default=(),
        description="other workers' model caches to copy files from before asking the source "
        "(each copy is verified like a download; the source is the fallback)",
    )


class DownloadProgress(ValueModel):
    """A progress event emitted while downloading."""

    file: str
    downloaded_bytes: Bytes
    total_bytes: Bytes | None = None
    bytes_per_second: float | None = None
    eta_seconds: float | None = None
    done: bool = False


class DownloadResult(ValueModel):
    """Files of a model present and verified in the local cache."""

    ref: ModelRef
    root: str = Field(description="local directory that holds the files")
    paths: tuple[str, ...] = Field(description="absolute local paths, in the order of the selected files")
    downloaded_bytes: Bytes = 0
