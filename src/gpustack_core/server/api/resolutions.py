"""Resolve a model reference without downloading it: its files, sizes and GGUF quantisations.

The deployment form's file/quantisation picker calls this; it is the source plugin's ``resolve()``
(headers and file lists, no weights), run on the server.
"""

from __future__ import annotations

import anyio.to_thread
from pydantic import BaseModel, Field

from gpustack_core.errors import GPUStackError, PluginNotFoundError
from gpustack_core.models.selection import gguf_quantization
from gpustack_core.types import ModelFile, ModelRef, SourceOptions

from ._framework import ApiError, Endpoint, Request

__all__ = ["ENDPOINTS", "ModelResolution", "ResolveRequest"]


class ResolveRequest(BaseModel):
    """A model reference, ``SOURCE:ID[@REVISION]`` (a selector is ignored: every file is listed)."""

    model: str = Field(min_length=3)


class ModelResolution(BaseModel):
    """The files of a model and the quantisations its GGUF files offer."""

    model: str
    format: str
    category: str | None
    files: list[ModelFile]
    quantizations: list[str] = Field(description="GGUF quantisation names, usable as the selector")
    total_size_bytes: int


def _resolve(req: Request, ref: ModelRef) -> ModelResolution:
    host = req.services.host
    try:
        source = host.model_source(ref.source)
    except PluginNotFoundError as exc:
        names = sorted(s.name for s in host.model_sources())
        raise ApiError(
            422,
            [
                {
                    "loc": ["body", "model"],
                    "msg": f"unknown source {ref.source!r}; installed: {names}",
                    "type": "source",
                }
            ],
        ) from exc
    options = SourceOptions(cache_dir=str(req.services.config.data_dir / "models"))
    try:
        with host.guard("sources", source.name, "resolve()"):
            metadata = source.resolve(ref.model_copy(update={"selector": None}), options)
    except GPUStackError as exc:
        raise ApiError(422, [{"loc": ["body", "model"], "msg": str(exc), "type": "resolve"}]) from exc
    quantizations = sorted({q for f in metadata.files if (q := gguf_quantization(f.path)) is not None})
    return ModelResolution(
        model=str(ref),
        format=metadata.format.value,
        category=None if metadata.category is None else metadata.category.value,
        files=list(metadata.files),
        quantizations=quantizations,
        total_size_bytes=metadata.total_size_bytes,
    )


async def resolve_model(req: Request) -> ModelResolution:
    """List a model's files and quantisations through its source plugin (no weights downloaded)."""
    try:
        ref = ModelRef.parse(req.body.model)
    except GPUStackError as exc:
        raise ApiError(422, [{"loc": ["body", "model"], "msg": str(exc), "type": "model_ref"}]) from exc
    return await anyio.to_thread.run_sync(_resolve, req, ref)


ENDPOINTS = (
    Endpoint(
        "POST",
        "/model-resolutions",
        resolve_model,
        "list a model's files and quantisations without downloading it",
        "deployments",
        auth="management",
        body=ResolveRequest,
        response=ModelResolution,
    ),
)
