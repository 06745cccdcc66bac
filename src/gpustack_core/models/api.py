"""Resolving and downloading models through the model-source plugins of a plugin host."""

from __future__ import annotations

import os

from ..contracts import ProgressCallback
from ..plugins import PluginHost
from ..types import DownloadResult, ModelMetadata, ModelRef, SourceOptions

__all__ = ["default_cache_dir", "download_model", "resolve_model"]


def default_cache_dir() -> str:
    """The default cache: ``$GPUSTACK_CORE_CACHE_DIR`` or ``~/.cache/gpustack-core/models``."""
    return os.environ.get("GPUSTACK_CORE_CACHE_DIR") or os.path.expanduser("~/.cache/gpustack-core/models")


def _as_ref(ref: ModelRef | str) -> ModelRef:
    return ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)


def resolve_model(host: PluginHost, ref: ModelRef | str, options: SourceOptions) -> ModelMetadata:
    """Metadata of ``ref`` from the source plugin it names, without downloading weights.

    Parameters:
        host: the plugin host whose model sources are used.
        ref: a :class:`ModelRef` or its text form ``SOURCE:ID[@REVISION][#SELECTOR]``.
        options: cache directory, offline mode, token, endpoint.

    Raises:
        InvalidModelReferenceError, PluginNotFoundError (no such source), ModelNotFoundError,
        ModelAccessDeniedError, OfflineModeError, DownloadError.
    """
    model_ref = _as_ref(ref)
    source = host.model_source(model_ref.source)
    return source.resolve(model_ref, options)


def download_model(
    host: PluginHost,
    ref: ModelRef | str,
    options: SourceOptions,
    progress: ProgressCallback | None = None,
) -> tuple[ModelMetadata, DownloadResult]:
    """Resolve ``ref``, select the files an engine needs and make them present in the cache.

    Returns the metadata and the download result (local paths in selection order). Raises what
    :func:`resolve_model` raises, plus ModelNotFoundError when the selector matches nothing.
    """
    model_ref = _as_ref(ref)
    source = host.model_source(model_ref.source)
    metadata = source.resolve(model_ref, options)
    files = source.select_files(metadata, model_ref)
    return metadata, source.download(metadata, files, options, progress)
