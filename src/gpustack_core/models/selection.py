"""Choosing the files of a model an engine needs (shared by every model-source plugin)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ModelNotFoundError
from ..types import ModelFormat

if TYPE_CHECKING:
    from ..types import ModelFile


__all__ = ["gguf_quantization", "is_gguf", "select_model_files"]

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32|TQ\d_\d|MXFP4)(?![A-Za-z0-9])", re.IGNORECASE
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
    """The quantization named in a GGUF file name (``Q4_K_M``, ``F16``...), upper-cased.

    The file name is searched first, then its directories (``Q4_K_M/model-00001-of-00002.gguf``).
    """
    parts = name.split("/")
    for part in reversed(parts):
        matches = _QUANT.findall(_SHARD.sub(".gguf", part))
        if matches:
            return str(matches[-1]).upper()
    return None


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
        return sorted(chosen, key=lambda f: f.path) + _best_projector(projectors)
    weights = [f for f in files if f.path.lower().endswith(".safetensors")]
    if weights:
        return _select_safetensors(files, weights, selector)
    chosen = [f for f in files if not selector or fnmatch.fnmatch(f.path, selector)]
    if not chosen:
        raise ModelNotFoundError(f"no file matches {selector!r}")
    return sorted(chosen, key=lambda f: f.path)


def _complete_shards(chosen: list[ModelFile], weights: list[ModelFile]) -> list[ModelFile]:
    """Add the missing shards of any split GGUF in ``chosen`` (same stem, same shard count)."""
    result = {f.path: f for f in chosen}
    for f in chosen:
        match = _SHARD.search(f.path)
        if match is None:
            continue
        stem, count = f.path[: match.start()], match.group(2)
        for other in weights:
            other_match = _SHARD.search(other.path)
            if other_match and other.path[: other_match.start()] == stem and other_match.group(2) == count:
                result[other.path] = other
    return list(result.values())


def _best_projector(projectors: list[ModelFile]) -> list[ModelFile]:
    """At most one multimodal projector: F16 when offered (the usual choice), else the first."""
    if not projectors:
        return []
    ordered = sorted(projectors, key=lambda f: (gguf_quantization(f.path) not in ("F16", None), f.path))
    return ordered[:1]


def _select_safetensors(
    files: Sequence[ModelFile], weights: list[ModelFile], selector: str | None
) -> list[ModelFile]:
    """Weights (root-level, the ones engines load), config and tokenizer files."""
    root_weights = [f for f in weights if "/" not in f.path]
    if root_weights:
        weights = root_weights
    # a Mistral-style repository ships the same weights twice; engines load model*.safetensors
    hf_style = [f for f in weights if not f.path.rsplit("/", 1)[-1].startswith("consolidated")]
    if hf_style:
        weights = hf_style
    if selector:
        weights = [f for f in weights if fnmatch.fnmatch(f.path, selector)]
        if not weights:
            raise ModelNotFoundError(f"no safetensors file matches {selector!r}")
    prefix = weights[0].path.rsplit("/", 1)[0] + "/" if "/" in weights[0].path else ""
    extras = [f for f in files if f.path in {prefix + name for name in _SAFETENSORS_EXTRAS}]
    return sorted(weights, key=lambda f: f.path) + sorted(extras, key=lambda f: f.path)


def is_gguf(files: Sequence[ModelFile]) -> bool:
    """Whether any file is GGUF."""
    return any(f.format == ModelFormat.GGUF for f in files)
