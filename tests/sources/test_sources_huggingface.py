"""The Hugging Face plugin, with the real huggingface_hub client, against a local fake Hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import CONFIG, GGUF_Q4, MMPROJ
from fake_hubs import COMMIT

from gpustack_core.errors import DownloadError, ModelAccessDeniedError, ModelNotFoundError, OfflineModeError
from gpustack_core.models.api import download_model, resolve_model
from gpustack_core.types import DownloadProgress, ModelFormat


def test_resolve_gguf_reads_header_by_range(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    meta = resolve_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    assert meta.format == ModelFormat.GGUF
    assert meta.commit == COMMIT
    files = {f.path: f for f in meta.files}
    assert files["tiny-Q4_K_M.gguf"].size_bytes == len(GGUF_Q4)
    assert files["tiny-Q4_K_M.gguf"].sha256 == hashlib.sha256(GGUF_Q4).hexdigest()
    assert files["README.md"].sha256 is None  # not an LFS file
    assert meta.gguf_metadata is not None
    assert meta.gguf_metadata["general.architecture"] == "llama"
    assert meta.gguf_metadata["llama.embedding_length"] == 512
    assert meta.gguf_metadata["tokenizer.ggml.tokens"] == {"array_length": 300}
    assert meta.gguf_tensors is not None
    assert [t.name for t in meta.gguf_tensors][:2] == ["token_embd.weight", "blk.0.attn_q.weight"]
    assert all(t.file == "tiny-Q4_K_M.gguf" for t in meta.gguf_tensors)
    # only range requests touched the weights: nothing was downloaded whole
    assert state.download_gets("org/tiny-gguf/tiny-Q4_K_M.gguf") == []
    assert all(g.end is not None for g in state.gets)


def test_resolve_safetensors_reads_config_and_headers(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    _, server = hf_hub
    meta = resolve_model(host, "huggingface:org/tiny-st", options_for(server))
    assert meta.format == ModelFormat.SAFETENSORS
    assert meta.config == {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "num_hidden_layers": 2}
    assert meta.safetensors_headers is not None
    header = meta.safetensors_headers["model.safetensors"]
    assert header["lm_head.weight"]["shape"] == [64, 32]
    source = host.model_source("huggingface")
    chosen = [f.path for f in source.select_files(meta, meta.ref)]
    assert chosen == ["model.safetensors", "config.json", "tokenizer.json"]
    assert len(CONFIG) == {f.path: f for f in meta.files}["config.json"].size_bytes


def test_download_into_shared_cache_with_progress(host, hf_hub, options_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    state.bytes_per_second = 2_000_000  # ~0.7 s, so that rate and ETA are reported on the way
    events: list[DownloadProgress] = []
    _, result = download_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server), events.append)
    root = tmp_path / "cache" / "huggingface" / "org" / "tiny-gguf" / COMMIT
    assert result.root == str(root)
    assert result.paths == (str(root / "tiny-Q4_K_M.gguf"), str(root / "mmproj-tiny-f16.gguf"))
    assert (root / "tiny-Q4_K_M.gguf").read_bytes() == GGUF_Q4
    assert (root / "mmproj-tiny-f16.gguf").read_bytes() == MMPROJ
    assert result.downloaded_bytes == len(GGUF_Q4) + len(MMPROJ)
    done = [e for e in events if e.done]
    assert {e.file for e in done} == {"tiny-Q4_K_M.gguf", "mmproj-tiny-f16.gguf"}
    assert all(e.downloaded_bytes == e.total_bytes for e in done)
    running = [e for e in events if not e.done and e.file == "tiny-Q4_K_M.gguf"]
    assert running, "no progress event before the end of the file"
    assert all(e.bytes_per_second and e.eta_seconds is not None for e in running)
    assert [e.downloaded_bytes for e in running] == sorted(e.downloaded_bytes for e in running)
    assert 500_000 < running[-1].bytes_per_second < 4_000_000  # type: ignore[operator]
    assert not list((root / ".gpustack" / "partial").iterdir())
    # a second download transfers nothing
    _, again = download_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    assert again.downloaded_bytes == 0
    assert len(state.download_gets("org/tiny-gguf/tiny-Q4_K_M.gguf")) == 1


def test_connection_cut_mid_file_resumes_with_range(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    key = "org/tiny-gguf/tiny-Q4_K_M.gguf"
    state.cut_after[key] = 300_000
    _, result = download_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    assert Path(result.paths[0]).read_bytes() == GGUF_Q4
    gets = state.download_gets(key)
    assert [g.start for g in gets] == [0, 300_000]  # the second attempt asked only for the rest
    assert result.downloaded_bytes == len(GGUF_Q4) + len(MMPROJ)


def test_corrupted_cached_file_is_fetched_again(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    _, result = download_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    path = Path(result.paths[0])
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    _, again = download_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    assert path.read_bytes() == GGUF_Q4
    assert again.downloaded_bytes == len(GGUF_Q4)
    assert len(state.download_gets("org/tiny-gguf/tiny-Q4_K_M.gguf")) == 2


def test_offline_mode_uses_cache_only(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    with pytest.raises(OfflineModeError, match="never resolved"):
        resolve_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server, offline=True))
    resolve_model(host, "huggingface:org/tiny-gguf#Q8_0", options_for(server))
    with pytest.raises(OfflineModeError, match="not in the cache"):
        download_model(host, "huggingface:org/tiny-gguf#Q8_0", options_for(server, offline=True))
    download_model(host, "huggingface:org/tiny-gguf#Q8_0", options_for(server))
    requests_before = len(state.gets)
    meta, result = download_model(host, "huggingface:org/tiny-gguf#Q8_0", options_for(server, offline=True))
    assert len(state.gets) == requests_before  # nothing reached the server
    assert meta.commit == COMMIT
    assert Path(result.paths[0]).name == "tiny-Q8_0.gguf"


def test_not_found_and_gated_errors_are_clear(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    _, server = hf_hub
    with pytest.raises(ModelNotFoundError, match=r"org/missing.*not found"):
        resolve_model(host, "huggingface:org/missing", options_for(server))
    with pytest.raises(ModelNotFoundError, match="revision 'nope' does not exist"):
        resolve_model(host, "huggingface:org/tiny-gguf@nope", options_for(server))
    with pytest.raises(ModelAccessDeniedError, match=r"gated.*token"):
        resolve_model(host, "huggingface:org/gated#Q4_K_M", options_for(server))
    with pytest.raises(ModelNotFoundError, match="available: Q4_K_M, Q8_0"):
        download_model(host, "huggingface:org/tiny-gguf#Q2_K", options_for(server))


def test_gated_model_with_token(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    _, result = download_model(host, "huggingface:org/gated#Q8_0", options_for(server, token=state.token))
    assert Path(result.paths[0]).name == "tiny-Q8_0.gguf"


def test_network_failure_names_the_url(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    _, server = hf_hub
    dead = options_for(server, endpoint="http://127.0.0.1:9")
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9"):
        resolve_model(host, "huggingface:org/tiny-gguf", dead)


def test_offline_metadata_is_per_selector(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    _, server = hf_hub
    resolve_model(host, "huggingface:org/tiny-gguf#Q8_0", options_for(server))
    resolve_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    q8 = resolve_model(host, "huggingface:org/tiny-gguf#Q8_0", options_for(server, offline=True))
    q4 = resolve_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server, offline=True))
    assert q8.gguf_metadata is not None
    assert q4.gguf_metadata is not None
    assert q8.gguf_metadata["llama.embedding_length"] == 128
    assert q4.gguf_metadata["llama.embedding_length"] == 512
    with pytest.raises(OfflineModeError, match="with this selector"):
        resolve_model(host, "huggingface:org/tiny-gguf#*.gguf", options_for(server, offline=True))


def test_header_read_from_a_server_without_range_support(host, hf_hub, options_for) -> None:  # type: ignore[no-untyped-def]
    state, server = hf_hub
    state.ignore_range = True
    meta = resolve_model(host, "huggingface:org/tiny-gguf#Q4_K_M", options_for(server))
    assert meta.gguf_metadata is not None
    assert meta.gguf_metadata["llama.embedding_length"] == 512
