"""gpustack-core model-source plugin for the Hugging Face Hub, through the ``huggingface_hub`` client.

Listing and metadata come from :class:`huggingface_hub.HfApi` (``model_info`` with
``files_metadata=True``: every file's size and, for LFS files, its sha256). File URLs come from
:func:`huggingface_hub.hf_hub_url` at the resolved commit, request headers (user agent, token) from
:func:`huggingface_hub.utils.build_hf_headers`. Headers are read by HTTP range requests and files
are downloaded into gpustack-core's shared cache (lock, resume, verification) by the core's
:class:`~gpustack_core.models.remote_source.RemoteModelSource`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpustack_core import ModelSource, hookimpl
from gpustack_core.errors import DownloadError, ModelAccessDeniedError, ModelNotFoundError
from gpustack_core.models.formats import format_from_name
from gpustack_core.models.remote_source import RemoteListing, RemoteModelSource

if TYPE_CHECKING:
    from gpustack_core.types import ModelFile, ModelMetadata, ModelRef, SourceOptions


__all__ = ["DEFAULT_ENDPOINT", "HuggingFaceModelSource", "gpustack_register_model_sources"]

DEFAULT_ENDPOINT = "https://huggingface.co"


def _endpoint(options: SourceOptions) -> str:
    return (options.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


class HuggingFaceModelSource(RemoteModelSource):
    """Models on the Hugging Face Hub: ``huggingface:ORG/REPO[@REVISION][#QUANT_OR_GLOB]``."""

    name = "huggingface"

    def cache_key(self, ref: ModelRef) -> tuple[str, str]:
        """The repo id and the revision asked for (default ``main``)."""
        return ref.id, ref.revision or "main"

    def request_headers(self, options: SourceOptions) -> dict[str, str]:
        """huggingface_hub's headers: user agent and the token (given, ``HF_TOKEN`` or stored)."""
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # lazily exported

        return dict(build_hf_headers(token=options.token))

    def list_remote(self, ref: ModelRef, options: SourceOptions) -> RemoteListing:
        """``HfApi.model_info(files_metadata=True)``: siblings with sizes and LFS sha256, commit."""
        # imported here: plugin discovery loads every source plugin even when another is used
        from huggingface_hub import HfApi

        # huggingface_hub.utils exports the error classes in 0.24 and 2.x alike
        from huggingface_hub.utils import (  # type: ignore[attr-defined]
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        from gpustack_core.types import ModelFile

        endpoint = _endpoint(options)
        api = HfApi(endpoint=endpoint, token=options.token)
        what = f"huggingface:{ref.id}" + (f"@{ref.revision}" if ref.revision else "") + f" at {endpoint}"
        try:
            info = api.model_info(
                ref.id, revision=ref.revision, files_metadata=True, timeout=options.timeout_s
            )
        except GatedRepoError as exc:
            raise ModelAccessDeniedError(
                f"{what} is gated: accept its terms on the Hub and pass a token with access "
                "(--token or HF_TOKEN)"
            ) from exc
        except RevisionNotFoundError as exc:
            raise ModelNotFoundError(f"{what}: revision {ref.revision!r} does not exist") from exc
        except (RepositoryNotFoundError, EntryNotFoundError) as exc:
            response = getattr(exc, "response", None)
            status = response.status_code if response is not None else None
            if status in (401, 403) and options.token:
                raise ModelAccessDeniedError(f"{what}: the token was refused (HTTP {status})") from exc
            raise ModelNotFoundError(
                f"{what}: repository not found (HTTP {status}); check the id, "
                "or pass a token if it is private"
            ) from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise ModelAccessDeniedError(
                    f"{what}: access denied (HTTP {status}); pass a token with access (--token or HF_TOKEN)"
                ) from exc
            raise DownloadError(f"{what}: the Hub answered HTTP {status}: {exc}") from exc
        except Exception as exc:  # network errors of the client's HTTP library
            raise DownloadError(f"{what}: cannot reach the Hub ({type(exc).__name__}: {exc})") from exc
        files = tuple(
            ModelFile(
                path=s.rfilename,
                size_bytes=(s.lfs.size if s.lfs is not None else s.size),
                sha256=(s.lfs.sha256 if s.lfs is not None else None),
                format=format_from_name(s.rfilename),
            )
            for s in (info.siblings or [])
        )
        if not files:
            raise ModelNotFoundError(f"{what}: the repository has no files")
        return RemoteListing(files=files, commit=info.sha)

    def file_url(self, metadata: ModelMetadata, file: ModelFile, options: SourceOptions) -> str:
        """``hf_hub_url`` at the resolved commit."""
        from huggingface_hub import hf_hub_url

        return hf_hub_url(
            metadata.ref.id,
            file.path,
            revision=metadata.commit or metadata.ref.revision or "main",
            endpoint=_endpoint(options),
        )


@hookimpl
def gpustack_register_model_sources(register: Callable[[ModelSource], None]) -> None:
    """Register the Hugging Face model source."""
    register(HuggingFaceModelSource())
