"""gpustack-core model-source plugin for the Ollama library registry.

``ollama:NAME[:TAG]`` (namespace ``library``) or ``ollama:NAMESPACE/NAME[:TAG]``; the tag may also be
given as ``@TAG``; default ``latest``. The registry speaks the OCI distribution API:

- ``GET /v2/<namespace>/<name>/manifests/<tag>`` (Accept: Docker manifest v2) lists layers, each
  with ``mediaType``, ``digest`` (``sha256:<hex>``) and ``size``;
- the layer ``application/vnd.ollama.image.model`` is the GGUF weights file,
  ``application/vnd.ollama.image.projector`` the multimodal projector (also GGUF);
- ``GET /v2/<namespace>/<name>/blobs/<digest>`` serves a layer (usually a redirect to a CDN that
  honours ``Range``).

Every layer is verified against its sha256 digest. The cache revision is the manifest's sha256.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpustack_core import ModelSource, hookimpl
from gpustack_core.errors import DownloadError, InvalidModelReferenceError, ModelNotFoundError
from gpustack_core.models.remote_source import RemoteListing, RemoteModelSource
from gpustack_core.types import ModelFormat

if TYPE_CHECKING:
    from gpustack_core.types import ModelFile, ModelMetadata, ModelRef, SourceOptions


__all__ = ["DEFAULT_REGISTRY", "MANIFEST_ACCEPT", "OllamaModelSource", "gpustack_register_model_sources"]

DEFAULT_REGISTRY = "https://registry.ollama.ai"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
_MEDIA_PREFIX = "application/vnd.ollama.image."


def _registry(options: SourceOptions) -> str:
    return (options.endpoint or os.environ.get("OLLAMA_REGISTRY") or DEFAULT_REGISTRY).rstrip("/")


def _split(ref: ModelRef) -> tuple[str, str, str]:
    """``(namespace, name, tag)`` of a reference."""
    text, _, tag = ref.id.partition(":")
    tag = tag or ref.revision or "latest"
    parts = [p for p in text.split("/") if p]
    if len(parts) == 1:
        parts = ["library", parts[0]]
    if len(parts) != 2 or not tag:
        raise InvalidModelReferenceError(
            f"invalid Ollama model {ref.id!r}: expected NAME[:TAG] or NAMESPACE/NAME[:TAG], "
            "e.g. ollama:llama3.2:1b"
        )
    return parts[0], parts[1], tag


def _file_name(name: str, tag: str, kind: str) -> tuple[str, ModelFormat]:
    if kind == "model":
        return f"{name}-{tag}.gguf", ModelFormat.GGUF
    if kind == "projector":
        return f"{name}-{tag}-mmproj.gguf", ModelFormat.GGUF
    return kind, ModelFormat.OTHER  # template, params, license, system, adapter, messages


class OllamaModelSource(RemoteModelSource):
    """GGUF models from the Ollama library registry."""

    name = "ollama"

    def cache_key(self, ref: ModelRef) -> tuple[str, str]:
        """``NAMESPACE/NAME`` and the tag."""
        namespace, name, tag = _split(ref)
        return f"{namespace}/{name}", tag

    def list_remote(self, ref: ModelRef, options: SourceOptions) -> RemoteListing:
        """Fetch the manifest; its layers become files named after the model and tag."""
        from gpustack_core.types import ModelFile

        namespace, name, tag = _split(ref)
        url = f"{_registry(options)}/v2/{namespace}/{name}/manifests/{tag}"
        headers = {"Accept": MANIFEST_ACCEPT, **self.request_headers(options)}
        import httpx  # on first use: loading the plugin (e.g. for `gpustack-core plugins`) stays cheap

        from gpustack_core.models.cache import check_response
        from gpustack_core.models.selection import is_gguf

        try:
            response = httpx.get(url, headers=headers, timeout=options.timeout_s, follow_redirects=True)
        except httpx.TransportError as exc:
            raise DownloadError(f"{url}: cannot reach the Ollama registry ({exc})") from exc
        if response.status_code == 404:
            raise ModelNotFoundError(
                f"the Ollama registry has no model {namespace}/{name}:{tag} ({url}: HTTP 404)"
            )
        check_response(response, url)
        try:
            manifest: Any = json.loads(response.content)
            layers = manifest["layers"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DownloadError(f"{url}: not an image manifest ({exc})") from exc
        files: list[ModelFile] = []
        for layer in layers:
            media = str(layer.get("mediaType", ""))
            digest = str(layer.get("digest", ""))
            if not media.startswith(_MEDIA_PREFIX) or not digest.startswith("sha256:"):
                continue
            # media types may carry parameters: "application/vnd.ollama.image.template; name=x"
            path, fmt = _file_name(name, tag, media[len(_MEDIA_PREFIX) :].split(";")[0].strip())
            if any(f.path == path for f in files):
                path = f"{path}-{digest[7:19]}"
            files.append(
                ModelFile(path=path, size_bytes=int(layer["size"]), sha256=digest[7:].lower(), format=fmt)
            )
        if not is_gguf(files):
            raise ModelNotFoundError(
                f"{url}: the manifest has no {_MEDIA_PREFIX}model (GGUF) layer; models stored as tensor "
                "layers are not supported by this plugin"
            )
        import hashlib  # on use: the plugin loads without OpenSSL

        return RemoteListing(files=tuple(files), commit=hashlib.sha256(response.content).hexdigest())

    def file_url(self, metadata: ModelMetadata, file: ModelFile, options: SourceOptions) -> str:
        """The blob URL of the layer's digest."""
        namespace, name, _ = _split(metadata.ref)
        if not file.sha256:
            raise DownloadError(f"Ollama layer {file.path} has no digest; resolve the model again")
        return f"{_registry(options)}/v2/{namespace}/{name}/blobs/sha256:{file.sha256}"


@hookimpl
def gpustack_register_model_sources(register: Callable[[ModelSource], None]) -> None:
    """Register the Ollama model source."""
    register(OllamaModelSource())
