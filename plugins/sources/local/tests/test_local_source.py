"""The local model source against real GGUF and safetensors files written in the test."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gpustack_source_local import LocalModelSource

from gpustack_core import ModelRef, PluginHost, SourceOptions
from gpustack_core.errors import DownloadError, ModelNotFoundError
from gpustack_core.types import DownloadProgress, ModelFormat


def write_gguf(path: Path) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_safetensors(path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)


@pytest.fixture
def options(tmp_path: Path) -> SourceOptions:
    return SourceOptions(cache_dir=str(tmp_path / "cache"))


def test_single_gguf_file(tmp_path: Path, options: SourceOptions) -> None:
    model = tmp_path / "tiny.gguf"
    write_gguf(model)
    source = LocalModelSource()
    ref = ModelRef.parse(f"local:{model}")
    meta = source.resolve(ref, options)
    assert meta.format == ModelFormat.GGUF
    assert [(f.path, f.size_bytes) for f in meta.files] == [("tiny.gguf", model.stat().st_size)]
    events: list[DownloadProgress] = []
    result = source.download(meta, source.select_files(meta, ref), options, events.append)
    assert result.paths == (str(model),)
    assert events[-1].done
    assert events[-1].downloaded_bytes == model.stat().st_size


def test_safetensors_directory_reads_config_and_headers_and_selects_needed_files(
    tmp_path: Path, options: SourceOptions
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write_safetensors(repo / "model-00001-of-00002.safetensors")
    write_safetensors(repo / "model-00002-of-00002.safetensors")
    (repo / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2})
    )
    (repo / "tokenizer.json").write_text("{}")
    (repo / "README.md").write_text("readme")
    (repo / "original").mkdir()
    (repo / "original" / "consolidated.pth").write_bytes(b"x" * 10)
    source = LocalModelSource()
    ref = ModelRef.parse(f"local:{repo}")
    meta = source.resolve(ref, options)
    assert meta.format == ModelFormat.SAFETENSORS
    assert meta.config == {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}
    assert meta.safetensors_headers is not None
    assert meta.safetensors_headers["model-00001-of-00002.safetensors"]["w"]["dtype"] == "F16"
    selected = [f.path for f in source.select_files(meta, ref)]
    assert selected == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
        "tokenizer.json",
    ]


def test_safetensors_headers_are_read_for_the_selected_weights_only(
    tmp_path: Path, options: SourceOptions
) -> None:
    """A Mistral-style directory ships its weights twice; only the ones engines load are sized."""
    repo = tmp_path / "mistral"
    (repo / "onnx").mkdir(parents=True)
    write_safetensors(repo / "model.safetensors")
    write_safetensors(repo / "consolidated.safetensors")
    write_safetensors(repo / "onnx" / "model.safetensors")
    (repo / "config.json").write_text("{}")
    meta = LocalModelSource().resolve(ModelRef.parse(f"local:{repo}"), options)
    assert meta.safetensors_headers is not None
    assert sorted(meta.safetensors_headers) == ["model.safetensors"]


def test_format_detected_from_bytes_not_only_the_name(tmp_path: Path, options: SourceOptions) -> None:
    model = tmp_path / "weights.bin"
    write_gguf(model)
    meta = LocalModelSource().resolve(ModelRef.parse(f"local:{model}"), options)
    assert meta.format == ModelFormat.GGUF


def test_gguf_directory_with_several_quantizations_needs_a_selector(
    tmp_path: Path, options: SourceOptions
) -> None:
    repo = tmp_path / "ggufs"
    repo.mkdir()
    for name in ("m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-m-f16.gguf"):
        write_gguf(repo / name)
    source = LocalModelSource()
    meta = source.resolve(ModelRef.parse(f"local:{repo}"), options)
    with pytest.raises(ModelNotFoundError, match=r"Q4_K_M, Q8_0"):
        source.select_files(meta, meta.ref)
    chosen = source.select_files(meta, ModelRef.parse(f"local:{repo}#q8_0"))
    assert [f.path for f in chosen] == ["m-Q8_0.gguf", "mmproj-m-f16.gguf"]


def test_missing_relative_and_changed_paths_give_clear_errors(tmp_path: Path, options: SourceOptions) -> None:
    source = LocalModelSource()
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        source.resolve(ModelRef.parse(f"local:{tmp_path}/nope.gguf"), options)
    with pytest.raises(ModelNotFoundError, match="must be absolute"):
        source.resolve(ModelRef.parse("local:relative/model.gguf"), options)
    model = tmp_path / "m.gguf"
    write_gguf(model)
    meta = source.resolve(ModelRef.parse(f"local:{model}"), options)
    with model.open("ab") as handle:
        handle.write(b"more")
    with pytest.raises(DownloadError, match="changed size since it was resolved"):
        source.download(meta, meta.files, options)


def test_registered_through_its_entry_point() -> None:
    host = PluginHost(allow=["local"])
    assert isinstance(host.model_source("local"), LocalModelSource)
    assert host.owner("sources", "local").distribution == "gpustack-core-source-local"
