"""Which OpenAI routes a model of each category serves, so that a request to the wrong route (chat
to an embedding model) is a client's 400 naming what the model serves, never the engine's 500."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import GatewayHTTPError
from .protocols import ModelEntry

__all__ = ["CATEGORY_PATHS", "check_category"]

_TEXT = frozenset({"/v1/chat/completions", "/v1/completions"})
#: Category (``ModelEntry.category``) -> the gateway paths its models answer. A category not listed
#: here (a plugin's own) is not checked.
CATEGORY_PATHS: dict[str, frozenset[str]] = {
    "llm": _TEXT,
    "vlm": _TEXT,
    "embedding": frozenset({"/v1/embeddings"}),
    "rerank": frozenset({"/v1/rerank"}),
    "reranker": frozenset({"/v1/rerank"}),
    "image": frozenset({"/v1/images/generations"}),
    "speech_to_text": frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"}),
    "text_to_speech": frozenset({"/v1/audio/speech"}),
}
_CHECKED = frozenset().union(*CATEGORY_PATHS.values())


def check_category(models: Sequence[ModelEntry], model: str, path: str) -> None:
    """Refuse a request to ``path`` for a model whose category does not serve it.

    Raises:
        GatewayHTTPError: 400 ``invalid_request_error`` / ``model_category_mismatch``, naming the
            model's category and the routes it serves.
    """
    if path not in _CHECKED:
        return
    for entry in models:
        if entry.id != model:
            continue
        served = CATEGORY_PATHS.get(entry.category)
        if served is not None and path not in served:
            raise GatewayHTTPError(
                400,
                f"Model '{model}' is a {entry.category} model: it serves {', '.join(sorted(served))}, "
                f"not {path}.",
                error_type="invalid_request_error",
                code="model_category_mismatch",
                param="model",
            )
        return
