"""The model catalog: a curated list shipped with the server that admins replace or extend.

The shipped list is ``gpustack_core/server/catalog.json``. An admin's ``PUT /catalog`` stores a
list (given inline, or fetched from a URL by the server) in the settings table, replacing the shipped
one or extending it (entries with the same ``id`` are replaced). ``DELETE /catalog`` goes back to
the shipped list. Deploying an entry is an ordinary ``POST /deployments`` with its fields.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

from gpustack_core.server.store.records import Page
from gpustack_core.types import ModelCategory, ModelRef

from ._framework import ApiError, Endpoint, Request, validation_detail

__all__ = ["ENDPOINTS", "CatalogEntry", "CatalogUpdate", "shipped_catalog"]

_SETTING = "catalog"
_MAX_BYTES = 4 * 2**20


class CatalogEntry(BaseModel):
    """One model a user can deploy in one click."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str = Field(min_length=1, max_length=200)
    category: ModelCategory
    engine: str = Field(min_length=1)
    model: str = Field(description="model reference SOURCE:ID[@REVISION][#SELECTOR]")
    quantizations: list[str] = Field(default_factory=list, description="selectors offered in the form")
    size_bytes: int | None = Field(default=None, ge=0, description="approximate size of the default files")
    description: str = ""
    context_length: int | None = Field(default=None, ge=1)

    def model_post_init(self, context: object) -> None:
        ModelRef.parse(self.model)  # a bad reference is refused when the catalog is loaded


class CatalogDocument(BaseModel):
    """A catalog file: ``{"entries": [...]}``."""

    entries: list[CatalogEntry]


class CatalogUpdate(BaseModel):
    """Entries given inline or a URL to fetch them from (JSON, same shape as the shipped file)."""

    entries: list[CatalogEntry] | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    mode: Literal["replace", "extend"] = "extend"


def shipped_catalog() -> list[CatalogEntry]:
    """The catalog shipped in the wheel."""
    text = resources.files("gpustack_core.server").joinpath("catalog.json").read_text(encoding="utf-8")
    return CatalogDocument.model_validate_json(text).entries


async def _current(req: Request) -> list[CatalogEntry]:
    stored = await req.db(req.services.store.get_setting, _SETTING)
    if stored is None:
        return shipped_catalog()
    return CatalogDocument.model_validate_json(stored).entries


async def get_catalog(req: Request) -> Page:
    """The catalog in effect (the admins' list, or the shipped one)."""
    entries = await _current(req)
    return Page(items=entries, total=len(entries), limit=len(entries), offset=0)


async def _fetch(url: str) -> list[CatalogEntry]:
    try:
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=True) as client:
            r = await client.get(url)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # InvalidURL: not an HTTPError
        raise ApiError(
            422, [{"loc": ["body", "url"], "msg": f"cannot fetch {url}: {exc}", "type": "url"}]
        ) from exc
    if r.status_code != 200 or len(r.content) > _MAX_BYTES:
        msg = f"{url} answered {r.status_code} with {len(r.content)} bytes (need 200, at most {_MAX_BYTES})"
        raise ApiError(422, [{"loc": ["body", "url"], "msg": msg, "type": "url"}])
    try:
        return CatalogDocument.model_validate(json.loads(r.content)).entries
    except (ValueError, ValidationError) as exc:
        detail = (
            validation_detail(exc, "url")
            if isinstance(exc, ValidationError)
            else [{"loc": ["body", "url"], "msg": f"not a catalog JSON document: {exc}", "type": "json"}]
        )
        raise ApiError(422, detail) from exc


async def update_catalog(req: Request) -> Page:
    """Replace or extend the catalog from entries or a URL."""
    body: CatalogUpdate = req.body
    if (body.entries is None) == (body.url is None):
        raise ApiError(
            422, [{"loc": ["body"], "msg": "give exactly one of 'entries' and 'url'", "type": "value"}]
        )
    new = body.entries if body.entries is not None else await _fetch(body.url or "")
    merged: dict[str, CatalogEntry] = {} if body.mode == "replace" else {e.id: e for e in await _current(req)}
    for entry in new:
        merged[entry.id] = entry
    document = CatalogDocument(entries=list(merged.values()))
    await req.db(req.services.store.put_setting, _SETTING, document.model_dump_json())
    return Page(items=document.entries, total=len(document.entries), limit=len(document.entries), offset=0)


async def reset_catalog(req: Request) -> None:
    """Go back to the shipped catalog."""
    await req.db(req.services.store.delete_setting, _SETTING)


ENDPOINTS = (
    Endpoint(
        "GET", "/catalog", get_catalog, "the model catalog", "catalog", auth="user", list_of=CatalogEntry
    ),
    Endpoint(
        "PUT",
        "/catalog",
        update_catalog,
        "replace or extend the catalog (entries or a URL)",
        "catalog",
        auth="admin",
        body=CatalogUpdate,
        list_of=CatalogEntry,
    ),
    Endpoint(
        "DELETE",
        "/catalog",
        reset_catalog,
        "restore the shipped catalog",
        "catalog",
        auth="admin",
        status=204,
    ),
)
