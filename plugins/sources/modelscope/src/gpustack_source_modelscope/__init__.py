"""gpustack-core model-source plugin for ModelScope, through the ModelScope hub client.

Listing comes from ``modelscope_hub.HubApi.list_repo_files`` (the client that ``modelscope``'s
``modelscope.hub.api.HubApi`` delegates to since modelscope 1.30; it keeps each file's
``Sha256``, which the legacy ``get_model_files`` shim drops). File URLs come from the client's
``get_download_url`` (``/api/v1/models/{id}/repo?Revision=&FilePath=``). The endpoint is
``SourceOptions.endpoint``, else ``MODELSCOPE_ENDPOINT``, else the client's default.
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
    from modelscope_hub.api import HubApi

    from gpustack_core.types import ModelFile, ModelMetadata, ModelRef, SourceOptions

__all__ = ["ModelScopeModelSource", "gpustack_register_model_sources"]


def _endpoint(options: SourceOptions) -> str | None:
    return options.endpoint or os.environ.get("MODELSCOPE_ENDPOINT") or None


def _api(options: SourceOptions) -> HubApi:
    # imported here: the client takes most of a second to import, and plugin discovery loads
    # every source plugin even when another source is used
    from modelscope_hub.api import HubApi

    return HubApi(endpoint=_endpoint(options), token=options.token)


class ModelScopeModelSource(RemoteModelSource):
    """Models on ModelScope: ``modelscope:OWNER/NAME[@REVISION][#QUANT_OR_GLOB]``."""

    name = "modelscope"

    def cache_key(self, ref: ModelRef) -> tuple[str, str]:
        """The model id and the revision asked for (default ``master``)."""
        return ref.id, ref.revision or "master"

    def list_remote(self, ref: ModelRef, options: SourceOptions) -> RemoteListing:
        """Recursive file listing with sizes and sha256 at the revision (a branch or tag name)."""
        from modelscope_hub.errors import (
            AuthenticationError,
            HubError,
            NetworkError,
            NotExistError,
            PermissionDeniedError,
        )

        from gpustack_core.types import ModelFile

        api = _api(options)
        _, revision = self.cache_key(ref)
        what = f"modelscope:{ref.id}@{revision} at {_endpoint(options) or 'the default ModelScope endpoint'}"
        try:
            entries = api.list_repo_files(ref.id, "model", revision=revision, recursive=True)
        except NotExistError as exc:
            raise ModelNotFoundError(f"{what}: model or revision not found ({exc})") from exc
        except (AuthenticationError, PermissionDeniedError) as exc:
            raise ModelAccessDeniedError(
                f"{what}: access denied ({exc}); pass a ModelScope token with access (--token)"
            ) from exc
        except NetworkError as exc:
            raise DownloadError(f"{what}: cannot reach ModelScope ({exc})") from exc
        except HubError as exc:
            raise DownloadError(f"{what}: {type(exc).__name__}: {exc}") from exc
        files = tuple(
            ModelFile(
                path=e.path,
                size_bytes=e.size,
                sha256=(e.sha256.lower() if e.sha256 else None),
                format=format_from_name(e.path),
            )
            for e in entries
            if not e.is_dir
        )
        if not files:
            raise ModelNotFoundError(f"{what}: the model has no files")
        return RemoteListing(files=files, commit=None)

    def request_headers(self, options: SourceOptions) -> dict[str, str]:
        """The token as the client sends it: a bearer header and the ``m_session_id`` cookie."""
        if not options.token:
            return {}
        return {"Authorization": f"Bearer {options.token}", "Cookie": f"m_session_id={options.token}"}

    def file_url(self, metadata: ModelMetadata, file: ModelFile, options: SourceOptions) -> str:
        """The client's download URL of ``file`` at the revision."""
        _, revision = self.cache_key(metadata.ref)
        return _api(options).legacy.get_download_url(metadata.ref.id, "model", file.path, revision=revision)


@hookimpl
def gpustack_register_model_sources(register: Callable[[ModelSource], None]) -> None:
    """Register the ModelScope model source."""
    register(ModelScopeModelSource())
