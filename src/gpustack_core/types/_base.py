"""Shared configuration for every value type: immutable, strict about unknown fields."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Bytes", "ValueModel"]

#: A size in bytes. Every memory or file size in gpustack-core is an integer count of bytes.
Bytes = Annotated[int, Field(ge=0, description="a size in bytes")]


class ValueModel(BaseModel):
    """Base of all value types: frozen, unknown fields rejected, JSON round-trip safe."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)
