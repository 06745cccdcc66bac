"""Users (admin only) and API keys (own keys; admins see and revoke everyone's)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field, model_validator

from gpustack_core.server.passwords import password_problem
from gpustack_core.server.security import hash_secret, new_api_key
from gpustack_core.server.store import ConflictError, utcnow
from gpustack_core.server.store.records import ApiKeyRecord, Page, Role, Scope, UserRecord

from ._common import PAGE_QUERY, not_found, page, page_args
from ._framework import ApiError, Endpoint, Query, Request

__all__ = ["ENDPOINTS", "KeyCreate", "KeyCreated", "UserCreate", "UserUpdate"]


class UserCreate(BaseModel):
    """A new user."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    password: str = Field(min_length=8, max_length=1024, description="see the password policy")
    role: Role = "user"

    @model_validator(mode="after")
    def _policy(self) -> UserCreate:
        problem = password_problem(self.password, self.username)
        if problem is not None:
            raise ValueError(problem)
        return self


class UserUpdate(BaseModel):
    """Changes to a user; omitted fields stay."""

    password: str | None = Field(default=None, min_length=8, max_length=1024)
    role: Role | None = None
    disabled: bool | None = None


class KeyCreate(BaseModel):
    """A new API key."""

    name: str = Field(min_length=1, max_length=128)
    scopes: tuple[Scope, ...] = Field(default=("inference",), min_length=1)
    allowed_models: tuple[str, ...] | None = Field(default=None, description="None: every model")
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)
    user_id: str | None = Field(default=None, description="admins only: create the key for another user")


class KeyCreated(BaseModel):
    """The new key; ``key`` is shown this once and never again."""

    key: str
    record: ApiKeyRecord


async def list_users(req: Request) -> Page:
    """List users."""
    limit, offset = page_args(req)
    return page(await req.db(req.services.store.list_users, limit, offset, req.query["role"]), req)


async def create_user(req: Request) -> UserRecord:
    """Create a user; they must change the password an admin gave them at first login."""
    body: UserCreate = req.body
    pw = await req.db(req.services.hashing.hash, body.password)
    try:
        user = await req.db(req.services.store.create_user, body.username, pw, body.role)
    except ConflictError as exc:
        raise ApiError(409, str(exc)) from exc
    # the admin chose this password: the user replaces it at first login
    await req.db(req.services.store.require_password_change, user.id, True)
    return user


async def get_user(req: Request) -> UserRecord:
    """One user."""
    user = await req.db(req.services.store.get_user, req.path_params["user_id"])
    if user is None:
        raise not_found("user", req.path_params["user_id"])
    return user


async def update_user(req: Request) -> UserRecord:
    """Change a user's password, role or disabled flag."""
    body: UserUpdate = req.body
    user_id = req.path_params["user_id"]
    pw = None
    if body.password is not None:
        target = await req.db(req.services.store.get_user, user_id)
        if target is None:
            raise not_found("user", user_id)
        problem = password_problem(body.password, target.username)
        if problem is not None:
            raise ApiError(422, [{"loc": ["body", "password"], "msg": problem, "type": "value_error"}])
        pw = await req.db(req.services.hashing.hash, body.password)
    if user_id == req.require_caller().user.id and (body.role == "user" or body.disabled):
        raise ApiError(409, "you cannot demote or disable yourself; ask another admin")
    user = await req.db(
        req.services.store.update_user, user_id, role=body.role, password_hash=pw, disabled=body.disabled
    )
    req.services.credentials_changed()
    if user is None:
        raise not_found("user", user_id)
    if pw is not None:  # a password set by an admin for someone else is a one-time password
        await req.db(
            req.services.store.require_password_change, user_id, user_id != req.require_caller().user.id
        )
    return user


async def delete_user(req: Request) -> None:
    """Delete a user and their keys."""
    user_id = req.path_params["user_id"]
    if user_id == req.require_caller().user.id:
        raise ApiError(409, "you cannot delete yourself")
    deleted = await req.db(req.services.store.delete_user, user_id)
    req.services.credentials_changed()
    if not deleted:
        raise not_found("user", user_id)


async def list_keys(req: Request) -> Page:
    """API keys: your own, or (admins) anyone's with ``user_id``."""
    caller = req.require_caller()
    user_id = req.query["user_id"] if caller.is_admin else caller.user.id
    limit, offset = page_args(req)
    return page(await req.db(req.services.store.list_keys, limit, offset, user_id), req)


async def create_key(req: Request) -> KeyCreated:
    """Create an API key; the response holds the key once."""
    body: KeyCreate = req.body
    caller = req.require_caller()
    user_id = body.user_id or caller.user.id
    if user_id != caller.user.id:
        if not caller.is_admin:
            raise ApiError(403, "only admins create keys for other users")
        if await req.db(req.services.store.get_user, user_id) is None:
            raise not_found("user", user_id)
    if "management" in body.scopes and not caller.is_admin and "management" not in caller.scopes:
        raise ApiError(403, "a key cannot grant a scope its creator lacks")
    key_id, key = new_api_key()
    expires = None if body.expires_in_days is None else utcnow() + dt.timedelta(days=body.expires_in_days)
    record = await req.db(
        req.services.store.create_key,
        key_id,
        user_id,
        body.name,
        "key",
        hash_secret(key),
        list(body.scopes),
        None if body.allowed_models is None else list(body.allowed_models),
        expires,
    )
    return KeyCreated(key=key, record=record)


async def delete_key(req: Request) -> None:
    """Revoke a key (yours, or any as an admin)."""
    caller = req.require_caller()
    key_id = req.path_params["key_id"]
    found = await req.db(req.services.store.get_key, key_id)
    if found is None or (found[0].user_id != caller.user.id and not caller.is_admin):
        raise not_found("API key", key_id)
    await req.db(req.services.store.delete_key, key_id)
    req.services.credentials_changed()


_USER = "/users/{user_id}"
ENDPOINTS = (
    Endpoint(
        "GET",
        "/users",
        list_users,
        "list users",
        "users",
        auth="admin",
        list_of=UserRecord,
        query=(*PAGE_QUERY, Query("role", "str", "filter: admin or user")),
    ),
    Endpoint(
        "POST",
        "/users",
        create_user,
        "create a user",
        "users",
        auth="admin",
        body=UserCreate,
        response=UserRecord,
        status=201,
    ),
    Endpoint("GET", _USER, get_user, "get a user", "users", auth="admin", response=UserRecord),
    Endpoint(
        "PATCH",
        _USER,
        update_user,
        "update a user",
        "users",
        auth="admin",
        body=UserUpdate,
        response=UserRecord,
    ),
    Endpoint("DELETE", _USER, delete_user, "delete a user", "users", auth="admin", status=204),
    Endpoint(
        "GET",
        "/api-keys",
        list_keys,
        "list API keys",
        "api-keys",
        auth="management",
        list_of=ApiKeyRecord,
        query=(*PAGE_QUERY, Query("user_id", "str", "admins: keys of this user")),
    ),
    Endpoint(
        "POST",
        "/api-keys",
        create_key,
        "create an API key (shown once)",
        "api-keys",
        auth="management",
        body=KeyCreate,
        response=KeyCreated,
        status=201,
        errors=((404, "the user named by user_id does not exist"),),
    ),
    Endpoint(
        "DELETE",
        "/api-keys/{key_id}",
        delete_key,
        "revoke an API key",
        "api-keys",
        auth="management",
        status=204,
    ),
)
