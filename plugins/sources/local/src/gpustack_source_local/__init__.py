"""gpustack-core model-source plugin for models on local disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpustack_core import ModelSource, hookimpl
from gpustack_core.contracts import ProgressCallback
from gpustack_core.errors import DownloadError, ModelNotFoundError
from gpustack_core.models.formats import (
    format_from_name,
    model_format_of,
    read_safetensors_header,
    sniff_format,
)
from gpustack_core.types import ModelFormat

if TYPE_CHECKING:
    from gpustack_core.types import (
        DownloadResult,
        GGUFTensor,
        ModelFile,
        ModelMetadata,
        ModelRef,
        SourceOptions,
    )


__all__ = ["LocalModelSource", "gpustack_register_model_sources"]

_SKIP_DIRS = {".git", ".cache", "__pycache__"}


def _file_format(path: Path) -> ModelFormat:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return format_from_name(path.name)
    sniffed = sniff_format(head)
    return sniffed if sniffed != ModelFormat.OTHER else format_from_name(path.name)


def _selected(files: tuple[ModelFile, ...], ref: ModelRef) -> Sequence[ModelFile]:
    """The files ``select_files`` will choose, or none when the selection fails."""
    from gpustack_core.models.selection import select_model_files  # on use, as the header reader

    try:
        return files if len(files) == 1 else select_model_files(files, ref.selector)
    except ModelNotFoundError:
        return ()  # e.g. several quantizations and none chosen: select_files will say so


def _safetensors_headers(root: Path, selected: Sequence[ModelFile]) -> dict[str, Any]:
    """file -> header of every selected safetensors file (the weights an engine loads)."""
    headers: dict[str, Any] = {}
    for f in selected:
        if f.format == ModelFormat.SAFETENSORS:
            try:
                headers[f.path] = read_safetensors_header(root / f.path)
            except (OSError, ValueError) as exc:
                raise DownloadError(f"cannot read safetensors header of {root / f.path}: {exc}") from exc
    return headers


def _gguf_headers(
    root: Path, selected: Sequence[ModelFile]
) -> tuple[dict[str, Any] | None, tuple[GGUFTensor, ...] | None]:
    """Header key/values of the first selected GGUF and tensor infos of every selected shard."""
    # on use: listing plugins (`gpustack-core plugins`) does not need the GGUF reader
    from gpustack_core.models.gguf_header import GGUFHeaderError, metadata_for_display, read_gguf_header

    weights = [f for f in selected if f.format == ModelFormat.GGUF and "mmproj" not in f.path.lower()]
    metadata: dict[str, Any] | None = None
    tensors: list[GGUFTensor] = []
    for f in weights:
        try:
            header = read_gguf_header(root / f.path)
        except (OSError, GGUFHeaderError) as exc:
            raise DownloadError(f"cannot read the GGUF header of {root / f.path}: {exc}") from exc
        if metadata is None:
            metadata = metadata_for_display(header.metadata)
        tensors.extend(t.model_copy(update={"file": f.path}) for t in header.tensors)
    return metadata, (tuple(tensors) if weights else None)


class LocalModelSource(ModelSource):
    """Models that are already on disk: a single file or a directory."""

    name = "local"

    def _root_and_files(self, ref: ModelRef) -> tuple[Path, list[Path]]:
        path = Path(os.path.expanduser(ref.id))
        if not path.is_absolute():
            raise ModelNotFoundError(
                f"local model path {ref.id!r} must be absolute (e.g. local:/models/x.gguf)"
            )
        if path.is_file():
            return path.parent, [path]
        if path.is_dir():
            files = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part in _SKIP_DIRS for part in p.relative_to(path).parts)
            ]
            if not files:
                raise ModelNotFoundError(f"local model directory {path} is empty")
            return path, files
        raise ModelNotFoundError(f"local model path {path} does not exist")

    def resolve(self, ref: ModelRef, options: SourceOptions) -> ModelMetadata:
        """List files and sizes, detect the format, read config.json and the headers (GGUF or
        safetensors) of the files ``select_files`` chooses."""
        from gpustack_core.types import ModelFile, ModelMetadata

        root, paths = self._root_and_files(ref)
        files = tuple(
            ModelFile(
                path=p.relative_to(root).as_posix(),
                size_bytes=p.stat().st_size,
                format=_file_format(p),
            )
            for p in paths
        )
        model_format = model_format_of(files)
        config: dict[str, Any] | None = None
        config_path = root / "config.json"
        if len(paths) > 1 and config_path.is_file():
            try:
                loaded = json.loads(config_path.read_text())
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(f"{config_path} is not valid JSON: {exc}") from exc
            config = loaded if isinstance(loaded, dict) else None
        selected = _selected(files, ref)
        headers = _safetensors_headers(root, selected) if model_format == ModelFormat.SAFETENSORS else None
        gguf_metadata, gguf_tensors = (
            _gguf_headers(root, selected) if model_format == ModelFormat.GGUF else (None, None)
        )
        return ModelMetadata(
            ref=ref,
            format=model_format,
            files=files,
            config=config,
            safetensors_headers=headers,
            gguf_metadata=gguf_metadata,
            gguf_tensors=gguf_tensors,
        )

    def select_files(self, metadata: ModelMetadata, ref: ModelRef) -> list[ModelFile]:
        """The core's shared selection rules; a single-file reference selects that file."""
        from gpustack_core.models.selection import select_model_files

        if len(metadata.files) == 1:
            return list(metadata.files)
        return select_model_files(metadata.files, ref.selector)

    def download(
        self,
        metadata: ModelMetadata,
        files: Sequence[ModelFile],
        options: SourceOptions,
        progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Nothing to fetch: check each file still exists with the size seen by ``resolve``."""
        from gpustack_core.types import DownloadProgress, DownloadResult

        root, _ = self._root_and_files(metadata.ref)
        paths: list[str] = []
        for f in files:
            path = root / f.path
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise DownloadError(f"local model file {path} is gone: {exc}") from exc
            if f.size_bytes is not None and size != f.size_bytes:
                raise DownloadError(
                    f"local model file {path} changed size since it was resolved "
                    f"({f.size_bytes} -> {size} bytes); resolve the model again"
                )
            if progress is not None:
                progress(DownloadProgress(file=f.path, downloaded_bytes=size, total_bytes=size, done=True))
            paths.append(str(path))
        return DownloadResult(ref=metadata.ref, root=str(root), paths=tuple(paths), downloaded_bytes=0)


@hookimpl
def gpustack_register_model_sources(register: Callable[[ModelSource], None]) -> None:
    """Register the local-disk model source."""
    register(LocalModelSource())
