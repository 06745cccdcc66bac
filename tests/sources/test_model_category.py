"""Category detection from real model headers: GGUF files written with ``gguf`` (LLM, embedding by
pooling type and by encoder architecture, rerank by rank pooling) and safetensors-style directories
(``config.json``, sentence-transformers' ``modules.json``), resolved through the local source."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from gpustack_core.models.api import resolve_model
from gpustack_core.models.category import category_from_config, category_from_gguf, detect_category
from gpustack_core.plugins import PluginHost
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import ModelCategory, SourceOptions


def _detect(path: Path, tmp_path: Path) -> ModelCategory | None:
    metadata = resolve_model(PluginHost(environ={}), f"local:{path}", SourceOptions(cache_dir=str(tmp_path)))
    return detect_category(metadata)


@pytest.mark.parametrize(
    ("pooling", "category"),
    [
        (None, ModelCategory.LLM),
        ("none", ModelCategory.LLM),
        ("mean", ModelCategory.EMBEDDING),
        ("cls", ModelCategory.EMBEDDING),
        ("last", ModelCategory.EMBEDDING),
        ("rank", ModelCategory.RERANK),
    ],
)
def test_gguf_pooling_type(tmp_path: Path, pooling: str | None, category: ModelCategory) -> None:
    model = write_llama_gguf(tmp_path / "m.gguf", TinyLlamaSpec(seed=1, pooling=pooling))
    assert _detect(model, tmp_path) == category


def _bert_gguf(path: Path, pooling: int | None) -> Path:
    """A header-only GGUF of an encoder (``bert``) as llama.cpp's converter writes its keys."""
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_causal_attention(False)
    if pooling is not None:
        writer.add_pooling_type(gguf.PoolingType(pooling))
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_encoder_architecture(tmp_path: Path) -> None:
    assert _detect(_bert_gguf(tmp_path / "bert.gguf", None), tmp_path) == ModelCategory.EMBEDDING
    reranker = _bert_gguf(tmp_path / "bert-rerank.gguf", gguf.PoolingType.RANK.value)
    assert _detect(reranker, tmp_path) == ModelCategory.RERANK
    assert category_from_gguf({"general.architecture": "qwen2"}) == ModelCategory.LLM


def _hf_dir(root: Path, config: dict[str, object], *extra: str) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps(config))
    (root / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    for name in extra:
        (root / name).write_text("[]")
    return root


def test_safetensors_config(tmp_path: Path) -> None:
    llm = _hf_dir(tmp_path / "llm", {"architectures": ["Qwen2ForCausalLM"]})
    assert _detect(llm, tmp_path) == ModelCategory.LLM
    reranker = _hf_dir(
        tmp_path / "rr", {"architectures": ["XLMRobertaForSequenceClassification"], "num_labels": 1}
    )
    assert _detect(reranker, tmp_path) == ModelCategory.RERANK
    embedder = _hf_dir(tmp_path / "st", {"architectures": ["BertModel"]}, "modules.json")
    assert _detect(embedder, tmp_path) == ModelCategory.EMBEDDING
    classifier = {"architectures": ["BertForSequenceClassification"], "id2label": {"0": "neg", "1": "pos"}}
    assert category_from_config(classifier) is None
    assert category_from_config({"architectures": ["XLMRobertaModel"]}) == ModelCategory.EMBEDDING
    assert category_from_config({}, frozenset({"sub/sentence_bert_config.json"})) == ModelCategory.EMBEDDING
