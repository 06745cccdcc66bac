"""A base class for model sources that fetch over HTTP into the shared cache.

A hub plugin (Hugging Face, ModelScope, Ollama) subclasses :class:`RemoteModelSource` and
implements three methods: :meth:`~RemoteModelSource.cache_key` (where a reference lives in the
cache, without network), :meth:`~RemoteModelSource.list_remote` (the hub's file listing, through
the hub's own client) and :meth:`~RemoteModelSource.file_url`. Everything else is shared: reading
``config.json``, GGUF headers and safetensors headers through HTTP range requests, offline mode
from the cached metadata, file selection, and verified resumable downloads through
:class:`~gpustack_core.models.cache.ModelCache`.
"""

from __future__ import annotations

import functools
import json
import struct
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..contracts import ModelSource, ProgressCallback
from ..errors import DownloadError, ModelNotFoundError, OfflineModeError
from ..types import ModelFormat
from .formats import SAFETENSORS_MAX_HEADER_BYTES, model_format_of, parse_safetensors_header

# The cache, GGUF header reader and selection rules are imported where they are used: a hub
# plugin imports this module to subclass it, and listing plugins should not pay for them.
if TYPE_CHECKING:
    import httpx

    from ..types import DownloadResult, GGUFTensor, ModelFile, ModelMetadata, ModelRef, SourceOptions

__all__ = ["RemoteListing", "RemoteModelSource", "http_read_range", "model_format_of"]

_CONFIG_MAX_BYTES = 16 << 20
_HEADER_READERS = 8


@dataclass(frozen=True)
class RemoteListing:
    """What a hub reports for one model revision."""

    files: tuple[ModelFile, ...]
    commit: str | None = None


def http_read_range(client: httpx.Client, url: str, start: int, length: int) -> bytes:
    """Bytes ``[start, start + length)`` of ``url`` through an HTTP range request.

    A server that ignores ``Range`` (answers 200) is read from the start and cut; the body is not
    read further than needed. Raises the matching model-source error for HTTP errors and
    :class:`DownloadError` naming the URL for network failures.
    """
    import httpx

    from .cache import check_response

    headers = {"Range": f"bytes={start}-{start + length - 1}"}
    try:
        with client.stream("GET", url, headers=headers) as response:
            check_response(response, url)
            skip = start if response.status_code == 200 else 0
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= skip + length:
                    break
            return bytes(data[skip : skip + length])
    except httpx.TransportError as exc:
        raise DownloadError(f"reading {url} failed: {exc}; check the network and try again") from exc


class RemoteModelSource(ModelSource):
    """Shared behaviour of HTTP model sources; subclasses talk to one hub (see module docstring)."""

    @abstractmethod
    def cache_key(self, ref: ModelRef) -> tuple[str, str]:
        """``(model id in the cache, revision name)`` for ``ref``, without network access.

        The revision name is what the user asked for, or the hub's default (``main``...).
        """

    @abstractmethod
    def list_remote(self, ref: ModelRef, options: SourceOptions) -> RemoteListing:
        """The hub's file listing (paths, sizes, sha256 where published) and resolved commit.

        Raises ModelNotFoundError, ModelAccessDeniedError or DownloadError.
        """

    @abstractmethod
    def file_url(self, metadata: ModelMetadata, file: ModelFile, options: SourceOptions) -> str:
        """The URL that serves ``file`` (GET with ``Range`` support) at the resolved revision."""

    def request_headers(self, options: SourceOptions) -> dict[str, str]:
        """Headers sent with every file request; by default a bearer token when one is given."""
        return {"Authorization": f"Bearer {options.token}"} if options.token else {}

    def http_client(self, options: SourceOptions) -> httpx.Client:
        """A fresh HTTP client for file and range requests (redirects followed)."""
        import httpx  # imported on first use: listing plugins must not pay for it

        return httpx.Client(
            timeout=httpx.Timeout(options.timeout_s),
            follow_redirects=True,
            headers=self.request_headers(options),
        )

    def revision_of(self, metadata: ModelMetadata) -> str:
        """The cache directory name of a resolved revision: the commit, else the revision name."""
        return metadata.commit or self.cache_key(metadata.ref)[1]

    def resolve(self, ref: ModelRef, options: SourceOptions) -> ModelMetadata:
        """List files, read config.json and the GGUF / safetensors headers by range requests.

        In offline mode the metadata stored by the last online ``resolve`` is returned.
        """
        from ..types.models import ModelMetadata
        from .cache import ModelCache

        cache = ModelCache(options.cache_dir)
        cache_id, ref_name = self.cache_key(ref)
        if options.offline:
            revision = cache.read_ref(self.name, cache_id, ref_name)
            stored = cache.load_metadata(self.name, cache_id, revision, ref.selector) if revision else None
            if stored is None:
                raise OfflineModeError(
                    f"offline mode: {ref} (with this selector) was never resolved into the cache "
                    f"{cache.root}; run once without --offline"
                )
            return stored.model_copy(update={"ref": ref})
        listing = self.list_remote(ref, options)
        metadata = ModelMetadata(
            ref=ref, format=model_format_of(listing.files), files=listing.files, commit=listing.commit
        )
        with self.http_client(options) as client:
            metadata = self._read_headers(client, metadata, options)
        revision = self.revision_of(metadata)
        cache.save_metadata(self.name, cache_id, revision, metadata)
        cache.write_ref(self.name, cache_id, ref_name, revision)
        return metadata

    def _read_headers(
        self, client: httpx.Client, metadata: ModelMetadata, options: SourceOptions
    ) -> ModelMetadata:
        from .gguf_header import GGUFHeaderError, metadata_for_display, read_gguf_header_growing
        from .selection import select_model_files

        update: dict[str, Any] = {}
        by_path = {f.path: f for f in metadata.files}
        config_file = by_path.get("config.json")
        if config_file is not None and (config_file.size_bytes or 0) <= _CONFIG_MAX_BYTES:
            url = self.file_url(metadata, config_file, options)
            raw = http_read_range(client, url, 0, config_file.size_bytes or _CONFIG_MAX_BYTES)
            try:
                loaded = json.loads(raw)
            except ValueError as exc:
                raise DownloadError(f"{url}: config.json is not valid JSON ({exc})") from exc
            update["config"] = loaded if isinstance(loaded, dict) else None
        try:
            selected = select_model_files(metadata.files, metadata.ref.selector)
        except ModelNotFoundError:
            selected = []  # several quantizations and none chosen: select_files will say so
        if metadata.format == ModelFormat.GGUF:
            weights = [f for f in selected if f.format == ModelFormat.GGUF and "mmproj" not in f.path.lower()]
            tensors: list[GGUFTensor] = []
            for index, f in enumerate(weights):
                url = self.file_url(metadata, f, options)
                try:
                    header = read_gguf_header_growing(
                        functools.partial(http_read_range, client, url),
                        file=f.path,
                        file_size=f.size_bytes,
                        initial_bytes=min(1 << 20, f.size_bytes or 1 << 20),
                    )
                except GGUFHeaderError as exc:
                    raise DownloadError(f"{url}: cannot read the GGUF header: {exc}") from exc
                if index == 0:
                    update["gguf_metadata"] = metadata_for_display(header.metadata)
                tensors.extend(header.tensors)
            if weights:
                update["gguf_tensors"] = tuple(tensors)
        elif metadata.format == ModelFormat.SAFETENSORS:
            shards = [f for f in selected if f.format == ModelFormat.SAFETENSORS]
            urls = [self.file_url(metadata, f, options) for f in shards]
            # large models have dozens of shards, two round trips each: read them concurrently
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=_HEADER_READERS) as pool:
                read = pool.map(functools.partial(self._safetensors_header, client), urls)
                update["safetensors_headers"] = dict(zip([f.path for f in shards], read, strict=True))
        return metadata.model_copy(update=update)

    @staticmethod
    def _safetensors_header(client: httpx.Client, url: str) -> dict[str, Any]:
        first = http_read_range(client, url, 0, 8)
        if len(first) < 8:
            raise DownloadError(f"{url}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", first)
        if length > SAFETENSORS_MAX_HEADER_BYTES:
            raise DownloadError(f"{url}: declared safetensors header length {length} is implausible")
        try:
            return parse_safetensors_header(first + http_read_range(client, url, 8, length))
        except ValueError as exc:
            raise DownloadError(f"{url}: {exc}") from exc

    def select_files(self, metadata: ModelMetadata, ref: ModelRef) -> list[ModelFile]:
        """The core's shared selection rules (:func:`gpustack_core.models.selection.select_model_files`)."""
        from .selection import select_model_files

        return select_model_files(metadata.files, ref.selector)

    def download(
        self,
        metadata: ModelMetadata,
        files: Sequence[ModelFile],
        options: SourceOptions,
        progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Bring ``files`` into the shared cache, verified; see :meth:`ModelCache.ensure_files`."""
        from ..types.models import DownloadResult
        from .cache import FileRequest, ModelCache

        cache = ModelCache(options.cache_dir)
        cache_id, _ = self.cache_key(metadata.ref)
        revision = self.revision_of(metadata)
        requests = [
            FileRequest(
                path=f.path,
                url="" if options.offline else self.file_url(metadata, f, options),
                size_bytes=f.size_bytes,
                sha256=f.sha256,
            )
            for f in files
        ]
        client = None if options.offline else self.http_client(options)
        try:
            paths, transferred = cache.ensure_files(
                self.name,
                cache_id,
                revision,
                requests,
                client=client,
                offline=options.offline,
                progress=progress,
                peers=options.peers,
            )
        finally:
            if client is not None:
                client.close()
        return DownloadResult(
            ref=metadata.ref,
            root=str(cache.revision_dir(self.name, cache_id, revision)),
            paths=tuple(paths),
            downloaded_bytes=transferred,
        )
