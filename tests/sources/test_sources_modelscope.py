"""The ModelScope plugin, with the real modelscope hub client, against a local fake ModelScope."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import GGUF_Q8, SAFETENSORS

from gpustack_core.errors import ModelAccessDeniedError, ModelNotFoundError
from gpustack_core.models.api import download_model, resolve_model
from gpustack_core.types import ModelFormat


def test_resolve_lists_sha256_and_reads_headers(host, ms_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = ms_hub
    meta = resolve_model(host, "modelscope:owner/tiny-gguf#Q8_0", options_for(server))
    assert meta.format == ModelFormat.GGUF
    files = {f.path: f for f in meta.files}
    assert files["tiny-Q8_0.gguf"].sha256 == hashlib.sha256(GGUF_Q8).hexdigest()
    assert meta.gguf_metadata is not None
    assert meta.gguf_metadata["llama.embedding_length"] == 128
    assert meta.gguf_tensors
    assert state.download_gets("owner/tiny-gguf/tiny-Q8_0.gguf") == []
    st = resolve_model(host, "modelscope:owner/tiny-st", options_for(server))
    assert st.config is not None
    assert st.config["hidden_size"] == 32
    assert st.safetensors_headers is not None
    assert "lm_head.weight" in st.safetensors_headers["model.safetensors"]


def test_download_resume_and_layout(host, ms_hub, options_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state, server = ms_hub
    state.cut_after["owner/tiny-st/model.safetensors"] = 5000
    _, result = download_model(host, "modelscope:owner/tiny-st", options_for(server))
    root = tmp_path / "cache" / "modelscope" / "owner" / "tiny-st" / "master"
    assert result.paths == tuple(
        str(root / p) for p in ("model.safetensors", "config.json", "tokenizer.json")
    )
    assert (root / "model.safetensors").read_bytes() == SAFETENSORS
    assert not (root / "README.md").exists()
    assert [g.start for g in state.download_gets("owner/tiny-st/model.safetensors")] == [0, 5000]


def test_errors(host, ms_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = ms_hub
    with pytest.raises(ModelNotFoundError, match="owner/missing"):
        resolve_model(host, "modelscope:owner/missing", options_for(server))
    with pytest.raises(ModelAccessDeniedError, match="token"):
        resolve_model(host, "modelscope:owner/private#Q8_0", options_for(server))
    _, result = download_model(host, "modelscope:owner/private#Q8_0", options_for(server, token=state.token))
    assert Path(result.paths[0]).read_bytes() == GGUF_Q8
