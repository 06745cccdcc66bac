"""File selection rules shared by every source (core ``selection.py``)."""

from __future__ import annotations

import pytest

from gpustack_core.errors import ModelNotFoundError
from gpustack_core.models.formats import format_from_name
from gpustack_core.models.selection import gguf_quantization, select_model_files
from gpustack_core.types import ModelFile


def _files(*paths: str) -> list[ModelFile]:
    return [ModelFile(path=p, size_bytes=1, format=format_from_name(p)) for p in paths]


def _select(paths: list[str], selector: str | None) -> list[str]:
    return [f.path for f in select_model_files(_files(*paths), selector)]


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("model-q8_0.gguf", "Q8_0"),
        ("Llama-3-8B.IQ4_XS.gguf", "IQ4_XS"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("m-UD-Q4_K_XL-00001-of-00003.gguf", "Q4_K_XL"),
        ("Q5_K_M/model-00001-of-00002.gguf", "Q5_K_M"),
        ("model-bf16.gguf", "BF16"),
        ("model.gguf", None),
    ],
)
def test_quantization_from_names(name: str, quant: str | None) -> None:
    assert gguf_quantization(name) == quant


REPO = [
    "README.md",
    "m-Q4_K_M.gguf",
    "m-Q8_0-00001-of-00002.gguf",
    "m-Q8_0-00002-of-00002.gguf",
    "mmproj-m-Q8_0.gguf",
    "mmproj-m-F16.gguf",
]


def test_gguf_by_name_with_shards_and_projector() -> None:
    assert _select(REPO, "q8_0") == [
        "m-Q8_0-00001-of-00002.gguf",
        "m-Q8_0-00002-of-00002.gguf",
        "mmproj-m-F16.gguf",
    ]


def test_gguf_shard_stem_must_match_exactly() -> None:
    chosen = _select([*REPO, "m-Q8_0-extra-00001-of-00002.gguf"], "m-Q8_0-00001*")
    assert "m-Q8_0-extra-00001-of-00002.gguf" not in chosen
    assert chosen == ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf", "mmproj-m-F16.gguf"]


def test_gguf_glob_and_single_quant() -> None:
    assert _select(REPO, "*Q4_K_M*") == ["m-Q4_K_M.gguf", "mmproj-m-F16.gguf"]
    assert _select(["a-Q4_K_M.gguf", "README.md"], None) == ["a-Q4_K_M.gguf"]


def test_gguf_ambiguous_or_missing_lists_what_exists() -> None:
    with pytest.raises(ModelNotFoundError, match=r"several GGUF quantizations are available: Q4_K_M, Q8_0"):
        _select(REPO, None)
    with pytest.raises(ModelNotFoundError, match=r"no GGUF file matches 'Q2_K'; available: Q4_K_M, Q8_0"):
        _select(REPO, "Q2_K")


def test_safetensors_weights_config_tokenizer_only() -> None:
    repo = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",
        "original/consolidated.00.pth",
        "onnx/model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "pytorch_model.bin",
    ]
    assert _select(repo, None) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    with pytest.raises(ModelNotFoundError, match="no safetensors file matches"):
        _select(repo, "nothing*")


def test_other_formats_by_glob() -> None:
    assert _select(["a.bin", "b.txt"], "*.bin") == ["a.bin"]
    with pytest.raises(ModelNotFoundError):
        _select(["a.bin"], "*.pt")
