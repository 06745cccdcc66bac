"""The local source reads GGUF headers too (the estimator needs them for local models)."""

from __future__ import annotations

from pathlib import Path

from conftest import GGUF_Q4, GGUF_Q8, MMPROJ

from gpustack_core.models.api import download_model, resolve_model
from gpustack_core.types import SourceOptions


def test_local_gguf_directory_header_and_selection(host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "model"
    model.mkdir()
    (model / "tiny-Q4_K_M.gguf").write_bytes(GGUF_Q4)
    (model / "tiny-Q8_0.gguf").write_bytes(GGUF_Q8)
    (model / "mmproj-tiny-f16.gguf").write_bytes(MMPROJ)
    options = SourceOptions(cache_dir=str(tmp_path / "cache"))
    meta = resolve_model(host, f"local:{model}#Q8_0", options)
    assert meta.gguf_metadata is not None
    assert meta.gguf_metadata["llama.embedding_length"] == 128
    assert meta.gguf_tensors is not None
    assert {t.file for t in meta.gguf_tensors} == {"tiny-Q8_0.gguf"}
    _, result = download_model(host, f"local:{model}#Q8_0", options)
    assert result.paths == (str(model / "tiny-Q8_0.gguf"), str(model / "mmproj-tiny-f16.gguf"))
    single = resolve_model(host, f"local:{model / 'tiny-Q4_K_M.gguf'}", options)
    assert single.gguf_metadata is not None
    assert single.gguf_metadata["llama.embedding_length"] == 512
