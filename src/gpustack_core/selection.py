"""Choosing the files of a model an engine needs (shared by every model-source plugin)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from .errors import ModelNotFoundError
from .types import ModelFile, ModelFormat

__all__ = ["gguf_quantization", "is_gguf", "select_model_files"]

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32|TQ\d_\d)(?![A-Za-z0-9])", re.IGNORECASE
)
_SAFETENSORS_EXTRAS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
)


def gguf_quantization(name: str) -> str | None:
    """The quantization named in a GGUF file name (``Q4_K_M``, ``F16``...), upper-cased."""
    base = name.rsplit("/", 1)[-1]
    matches = _QUANT.findall(_SHARD.sub(".gguf", base))
    return matches[-1].upper() if matches else None


def _is_projector(name: str) -> bool:
    return "mmproj" in name.rsplit("/", 1)[-1].lower()


def select_model_files(files: Sequence[ModelFile], selector: str | None) -> list[ModelFile]:
    """Select what an engine needs from a model's file list.

    GGUF: the files of one quantization (named by ``selector``, a glob, or the only one present),
    every split shard of it, and the multimodal projector (``mmproj``) when present.
    safetensors: weights, config and tokenizer files. Other formats: files matching ``selector``,
    or all.

    Raises:
        ModelNotFoundError: nothing matches, or several quantizations exist and none was chosen;
            the message lists what is available.
    """
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    if ggufs:
        weights = [f for f in ggufs if not _is_projector(f.path)]
        projectors = [f for f in ggufs if _is_projector(f.path)]
        if selector and any(ch in selector for ch in "*?["):
            chosen = [f for f in weights if fnmatch.fnmatch(f.path, selector)]
        elif selector:
            chosen = [f for f in weights if (gguf_quantization(f.path) or "") == selector.upper()]
        else:
            quants = {gguf_quantization(f.path) for f in weights}
            if len(quants) > 1:
                raise ModelNotFoundError(
                    "several GGUF quantizations are available: "
                    + ", ".join(sorted(q or "?" for q in quants))
                    + "; choose one with '#QUANT' in the model reference"
                )
            chosen = weights
        if not chosen:
            available = sorted({gguf_quantization(f.path) or f.path for f in weights})
            raise ModelNotFoundError(
                f"no GGUF file matches {selector!r}; available: {', '.join(available) or 'none'}"
            )
        chosen = _complete_shards(chosen, weights)
        return sorted(chosen, key=lambda f: f.path) + sorted(projectors, key=lambda f: f.path)[:1]
    weights = [f for f in files if f.path.lower().endswith(".safetensors")]
    if weights:
        extras = [f for f in files if f.path.rsplit("/", 1)[-1] in _SAFETENSORS_EXTRAS]
        if selector:
            weights = [f for f in weights if fnmatch.fnmatch(f.path, selector)] or weights
        return sorted(weights, key=lambda f: f.path) + sorted(extras, key=lambda f: f.path)
    chosen = [f for f in files if not selector or fnmatch.fnmatch(f.path, selector)]
    if not chosen:
        raise ModelNotFoundError(f"no file matches {selector!r}")
    return sorted(chosen, key=lambda f: f.path)


def _complete_shards(chosen: list[ModelFile], weights: list[ModelFile]) -> list[ModelFile]:
    """Add the missing shards of any split GGUF in ``chosen``."""
    result = {f.path: f for f in chosen}
    for f in chosen:
        match = _SHARD.search(f.path)
        if match is None:
            continue
        stem = f.path[: match.start()]
        for other in weights:
            if other.path.startswith(stem) and _SHARD.search(other.path):
                result[other.path] = other
    return list(result.values())


def is_gguf(files: Sequence[ModelFile]) -> bool:
    """Whether any file is GGUF."""
    return any(f.format == ModelFormat.GGUF for f in files)
