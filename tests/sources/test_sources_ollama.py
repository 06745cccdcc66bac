"""The Ollama plugin against a local fake registry (manifest, blob redirect to a CDN path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import GGUF_Q4, MMPROJ

from gpustack_core.errors import DownloadError, ModelNotFoundError
from gpustack_core.models.api import download_model, resolve_model
from gpustack_core.types import ModelFormat


def test_resolve_manifest_and_gguf_header(host, ollama_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    _, server = ollama_hub
    meta = resolve_model(host, "ollama:tiny:1b", options_for(server))
    assert meta.format == ModelFormat.GGUF
    assert {f.path for f in meta.files} == {"tiny-1b.gguf", "tiny-1b-mmproj.gguf", "template", "params"}
    assert meta.commit is not None
    assert len(meta.commit) == 64
    assert meta.gguf_metadata is not None
    assert meta.gguf_metadata["general.architecture"] == "llama"


def test_download_verifies_digests(host, ollama_hub, options_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, server = ollama_hub
    meta, result = download_model(host, "ollama:library/tiny@1b", options_for(server))
    root = tmp_path / "cache" / "ollama" / "library" / "tiny" / str(meta.commit)
    assert result.paths == (str(root / "tiny-1b.gguf"), str(root / "tiny-1b-mmproj.gguf"))
    assert Path(result.paths[0]).read_bytes() == GGUF_Q4
    assert Path(result.paths[1]).read_bytes() == MMPROJ


def test_bad_blob_is_rejected(host, ollama_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = ollama_hub
    meta = resolve_model(host, "ollama:tiny:1b", options_for(server))
    digest = next(f.sha256 for f in meta.files if f.path == "tiny-1b.gguf")
    state.corrupt.add(f"sha256:{digest}")  # same size, one byte differs from the published digest
    source = host.model_source("ollama")
    with pytest.raises(DownloadError, match="does not match the published"):
        source.download(meta, source.select_files(meta, meta.ref), options_for(server))
    cache_root = Path(options_for(server).cache_dir) / "ollama" / "library" / "tiny" / str(meta.commit)
    assert not (cache_root / "tiny-1b.gguf").exists()
    assert not list((cache_root / ".gpustack" / "partial").iterdir())
    state.corrupt.clear()
    _, result = download_model(host, "ollama:tiny:1b", options_for(server))
    assert Path(result.paths[0]).read_bytes() == GGUF_Q4


def test_unknown_model(host, ollama_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    _, server = ollama_hub
    with pytest.raises(ModelNotFoundError, match="no model library/nope:latest"):
        resolve_model(host, "ollama:nope", options_for(server))
