"""The model-source interface: one object per hub or storage (Hugging Face, local path, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # the value types (pydantic) load on use: listing plugins does not need them
    from ..types import DownloadProgress, DownloadResult, ModelFile, ModelMetadata, ModelRef, SourceOptions

__all__ = ["ModelSource", "ProgressCallback"]

#: Called with each progress event during a download; must return quickly.
ProgressCallback = Callable[["DownloadProgress"], None]


class ModelSource(ABC):
    """Resolves model references to metadata and files, and downloads them into the shared cache.

    Register instances through :func:`gpustack_core.hookspecs.gpustack_register_model_sources`.
    ``name`` is the ``SOURCE`` part of a model reference (``huggingface:org/repo``).
    """

    #: Unique plugin-object name, e.g. ``"huggingface"``, ``"local"``.
    name: ClassVar[str] = ""

    @abstractmethod
    def resolve(self, ref: ModelRef, options: SourceOptions) -> ModelMetadata:
        """Describe the model without downloading its weights where the format allows.

        Parameters:
            ref: the reference; ``ref.source`` equals ``self.name``.
            options: cache directory, offline mode, token, endpoint.

        Returns:
            Files with sizes, format, resolved commit, and the config / GGUF header / safetensors
            headers where they can be read cheaply.

        Raises:
            ModelNotFoundError, ModelAccessDeniedError, OfflineModeError, DownloadError.
        """

    @abstractmethod
    def select_files(self, metadata: ModelMetadata, ref: ModelRef) -> list[ModelFile]:
        """Choose the files an engine needs.

        Parameters:
            metadata: what :meth:`resolve` returned.
            ref: the reference; ``ref.selector`` names a GGUF quantization or a glob.

        Returns:
            For GGUF: every shard of the chosen quantization plus the multimodal projector when
            present. For safetensors: weights, config and tokenizer files, nothing else.

        Raises:
            ModelNotFoundError: nothing matches the selector (list what is available).
        """

    @abstractmethod
    def download(
        self,
        metadata: ModelMetadata,
        files: Sequence[ModelFile],
        options: SourceOptions,
        progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Make ``files`` present and verified in the cache under ``options.cache_dir``.

        Safe to call from several processes at once (one downloads, the others wait); resumes
        partial files; verifies size and hash before a file counts as complete.

        Parameters:
            metadata: from :meth:`resolve`.
            files: from :meth:`select_files`.
            options: cache directory, offline mode, token.
            progress: called with byte counts, rate and ETA while downloading.

        Returns:
            Local paths of the files, in the order of ``files``.

        Raises:
            OfflineModeError, ModelAccessDeniedError, DownloadError.
        """
