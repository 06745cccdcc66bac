"""A model's category (LLM, embedding, rerank) from what its source resolved, without weights.

GGUF: ``<arch>.pooling_type`` (llama.cpp's ``llama_pooling_type``: 1 mean, 2 cls, 3 last ->
embedding; 4 rank -> rerank) and encoder-only architectures (``bert``, ``nomic-bert``, ...).
Safetensors: ``config.json``'s ``architectures`` (``*ForSequenceClassification`` with one label ->
rerank; an encoder ``*Model`` -> embedding; ``*ForCausalLM`` -> LLM) and sentence-transformers'
``modules.json`` / ``sentence_bert_config.json`` -> embedding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpustack_core.types import ModelCategory

if TYPE_CHECKING:
    from gpustack_core.types import ModelMetadata


__all__ = [
    "EMBEDDING_GGUF_ARCHITECTURES",
    "GGUF_POOLING_CATEGORIES",
    "category_from_config",
    "category_from_gguf",
    "detect_category",
]

#: llama.cpp's ``llama_pooling_type`` values (include/llama.h) -> what the model serves.
GGUF_POOLING_CATEGORIES: dict[int, ModelCategory] = {
    1: ModelCategory.EMBEDDING,  # mean
    2: ModelCategory.EMBEDDING,  # cls
    3: ModelCategory.EMBEDDING,  # last
    4: ModelCategory.RERANK,  # rank
}
#: GGUF architectures (``general.architecture``) of encoder-only models: embeddings by nature.
EMBEDDING_GGUF_ARCHITECTURES: frozenset[str] = frozenset(
    {
        "bert",
        "nomic-bert",
        "nomic-bert-moe",
        "jina-bert-v2",
        "jina-bert-v3",
        "modern-bert",
        "neo-bert",
        "t5encoder",
    }
)
#: Files whose presence makes a safetensors model a sentence-transformers embedder.
_SENTENCE_TRANSFORMERS_FILES = frozenset({"modules.json", "sentence_bert_config.json"})
_LLM_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration", "LMHeadModel")


def category_from_gguf(metadata: dict[str, Any]) -> ModelCategory:
    """The category of a GGUF model from its header's key/values (LLM when nothing says otherwise)."""
    architecture = str(metadata.get("general.architecture", ""))
    pooling = metadata.get(f"{architecture}.pooling_type")
    if isinstance(pooling, int) and pooling in GGUF_POOLING_CATEGORIES:
        return GGUF_POOLING_CATEGORIES[pooling]
    if architecture in EMBEDDING_GGUF_ARCHITECTURES:
        return ModelCategory.EMBEDDING
    return ModelCategory.LLM


def category_from_config(
    config: dict[str, Any], file_names: set[str] | frozenset[str] = frozenset()
) -> ModelCategory | None:
    """The category from a ``config.json`` (and the repository's file names), or ``None`` when it
    says nothing either way."""
    architectures = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith(_LLM_SUFFIXES) for a in architectures):
        return ModelCategory.LLM
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        labels = config.get("num_labels") or len(config.get("id2label") or {}) or None
        if labels in (None, 1):
            return ModelCategory.RERANK
    if {name.rsplit("/", 1)[-1] for name in file_names} & _SENTENCE_TRANSFORMERS_FILES:
        return ModelCategory.EMBEDDING
    if any(a.endswith("Model") for a in architectures):
        return ModelCategory.EMBEDDING
    return None


def detect_category(metadata: ModelMetadata) -> ModelCategory | None:
    """The model's category: what the source says, else the GGUF header, else ``config.json``;
    ``None`` when none of them tells."""
    if metadata.category is not None:
        return metadata.category
    if metadata.gguf_metadata:
        return category_from_gguf(metadata.gguf_metadata)
    if metadata.config:
        return category_from_config(metadata.config, frozenset(f.path for f in metadata.files))
    return None
