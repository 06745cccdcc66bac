"""The enumerations of the value types, in a module that does not import pydantic.

Plugins use them at import time (an engine's table of categories), and listing plugins must not
load pydantic; :mod:`gpustack_core.types` re-exports them.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ModelCategory", "ModelFormat", "WorkerState"]


class ModelFormat(str, Enum):
    """On-disk format of a model's weights."""

    GGUF = "gguf"
    SAFETENSORS = "safetensors"
    OTHER = "other"


class ModelCategory(str, Enum):
    """What a model does; engines declare which categories they serve."""

    LLM = "llm"
    VLM = "vlm"
    EMBEDDING = "embedding"
    RERANK = "rerank"
    IMAGE = "image"
    SPEECH_TO_TEXT = "speech_to_text"
    TEXT_TO_SPEECH = "text_to_speech"


class WorkerState(str, Enum):
    """Lifecycle state of a worker."""

    READY = "ready"
    NOT_READY = "not_ready"
    UNREACHABLE = "unreachable"


# Their public home (repr in docs and errors, pickling): ``gpustack_core.types``, not this module.
for _enum in (ModelCategory, ModelFormat, WorkerState):
    _enum.__module__ = "gpustack_core.types"
del _enum
