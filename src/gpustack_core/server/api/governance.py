"""Governance (admin): teams and members, model access rules, quotas and rate limits, fallback
chains; usage in hour/day buckets by model, user, key and team (users: their own)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from gpustack_core.server.store import ConflictError
from gpustack_core.server.store.governance import (
    AccessRule,
    GovernanceStore,
    LimitRecord,
    Metric,
    Period,
    SubjectKind,
    TeamRecord,
    UsageBucket,
)
from gpustack_core.server.store.records import Page

from ._common import not_found
from ._framework import ApiError, Endpoint, Query, Request

__all__ = [
    "ENDPOINTS",
    "AccessCreate",
    "FallbackChain",
    "FallbackSet",
    "LimitSet",
    "ScaleToZeroPolicy",
    "ScaleToZeroSet",
    "TeamCreate",
]


class TeamCreate(BaseModel):
    """A new team."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:/-]*$")
    description: str = Field(default="", max_length=2000)


class AccessCreate(BaseModel):
    """Allow a user or team to call a model (``*``: every model)."""

    subject_kind: Literal["user", "team"]
    subject_id: str = Field(min_length=1, max_length=36)
    model: str = Field(min_length=1, max_length=255)


class LimitSet(BaseModel):
    """A quota or rate limit; setting an existing one (same subject, model, metric, period) changes its max.

    Quotas: ``metric`` tokens per day, month or in total. Rate limits: requests (RPM) or tokens
    (TPM) per minute (or hour).
    """

    subject_kind: SubjectKind
    subject_id: str = Field(default="", max_length=36, description="'' for global")
    model: str = Field(default="", max_length=255, description="'' for every model")
    metric: Metric
    period: Period
    #: strict: JSON ``true``/``false`` are not numbers of tokens or requests
    max_value: int = Field(ge=0, strict=True)


class FallbackSet(BaseModel):
    """The models tried, in order, when a model cannot answer (empty: none)."""

    fallbacks: tuple[Annotated[str, Field(min_length=1, max_length=255)], ...] = Field(
        default=(), max_length=16
    )


class FallbackChain(FallbackSet):
    """A model's fallback chain."""

    model: str


def _gov(req: Request) -> GovernanceStore:
    return GovernanceStore(req.services.store.engine)


async def _changed(req: Request) -> None:
    if req.services.on_governance_changed is not None:
        await req.db(req.services.on_governance_changed)


def _list(items: list[Any]) -> Page:
    return Page(items=items, total=len(items), limit=max(1, len(items)), offset=0)


async def _team(req: Request) -> TeamRecord:
    ref = req.path_params["team"]
    team = await req.db(_gov(req).get_team, ref)
    if team is None:
        raise not_found("team", ref)
    return team


async def list_teams(req: Request) -> Page:
    """Every team with its members."""
    return _list(await req.db(_gov(req).list_teams))


async def create_team(req: Request) -> TeamRecord:
    """Create a team."""
    body: TeamCreate = req.body
    try:
        return await req.db(_gov(req).create_team, body.name, body.description)
    except ConflictError as exc:
        raise ApiError(409, str(exc)) from exc


async def get_team(req: Request) -> TeamRecord:
    """One team (by id or name)."""
    return await _team(req)


async def delete_team(req: Request) -> None:
    """Delete a team with its memberships, access rules and limits."""
    team = await _team(req)
    await req.db(_gov(req).delete_team, team.id)
    await _changed(req)


async def add_member(req: Request) -> TeamRecord:
    """Put a user into a team."""
    team = await _team(req)
    user_id = req.path_params["user_id"]
    if await req.db(req.services.store.get_user, user_id) is None:
        raise not_found("user", user_id)
    await req.db(_gov(req).add_member, team.id, user_id)
    await _changed(req)
    return await _team(req)


async def remove_member(req: Request) -> None:
    """Take a user out of a team."""
    team = await _team(req)
    if not await req.db(_gov(req).remove_member, team.id, req.path_params["user_id"]):
        raise not_found("member", req.path_params["user_id"])
    await _changed(req)


async def list_access(req: Request) -> Page:
    """Model access rules (a user with no rule on them or their teams may call every model)."""
    return _list(await req.db(_gov(req).list_access, req.query["subject_kind"], req.query["subject_id"]))


async def grant_access(req: Request) -> AccessRule:
    """Allow a user or team to call a model."""
    body: AccessCreate = req.body
    await _check_subject(req, body.subject_kind, body.subject_id)
    rule = await req.db(_gov(req).grant, body.subject_kind, body.subject_id, body.model)
    await _changed(req)
    return rule


async def revoke_access(req: Request) -> None:
    """Remove a model access rule."""
    q = req.query
    if not q["subject_kind"] or not q["subject_id"] or not q["model"]:
        raise ApiError(422, "give subject_kind, subject_id and model of the rule to remove")
    if not await req.db(_gov(req).revoke, q["subject_kind"], q["subject_id"], q["model"]):
        raise not_found("access rule", f"{q['subject_kind']}:{q['subject_id']}:{q['model']}")
    await _changed(req)


async def _check_subject(req: Request, kind: str, subject_id: str) -> None:
    # shape first (422), then existence (404): an empty id is a mistake, not a missing subject
    if kind == "global" and subject_id:
        raise ApiError(422, "a global limit has no subject_id; leave it empty")
    if kind != "global" and not subject_id:
        raise ApiError(422, f"a {kind} limit needs the {kind}'s id in subject_id")
    if kind == "user" and await req.db(req.services.store.get_user, subject_id) is None:
        raise not_found("user", subject_id)
    if kind == "team" and await req.db(_gov(req).get_team, subject_id) is None:
        raise not_found("team", subject_id)
    if kind == "key" and await req.db(req.services.store.get_key, subject_id) is None:
        raise not_found("API key", subject_id)


async def list_limits(req: Request) -> Page:
    """Quotas and rate limits."""
    return _list(await req.db(_gov(req).list_limits, req.query["subject_kind"], req.query["subject_id"]))


async def set_limit(req: Request) -> LimitRecord:
    """Create a limit or change its maximum."""
    body: LimitSet = req.body
    await _check_subject(req, body.subject_kind, body.subject_id)
    subject_id = body.subject_id
    if body.subject_kind == "team":  # accept a team's name too
        team = await req.db(_gov(req).get_team, subject_id)
        assert team is not None
        subject_id = team.id
    record = await req.db(
        _gov(req).set_limit,
        body.subject_kind,
        subject_id,
        body.model,
        body.metric,
        body.period,
        body.max_value,
    )
    await _changed(req)
    return record


async def delete_limit(req: Request) -> None:
    """Delete a limit and its counters."""
    if not await req.db(_gov(req).delete_limit, req.path_params["limit_id"]):
        raise not_found("limit", req.path_params["limit_id"])
    await _changed(req)


async def list_fallbacks(req: Request) -> Page:
    """Every fallback chain."""
    chains = await req.db(_gov(req).all_fallbacks)
    return _list([FallbackChain(model=m, fallbacks=f) for m, f in sorted(chains.items())])


async def set_fallbacks(req: Request) -> FallbackChain:
    """Replace a model's fallback chain (an empty list removes it)."""
    body: FallbackSet = req.body
    model = req.path_params["model"]
    if not model or len(model) > 255:
        raise ApiError(
            422, [{"loc": ["path", "model"], "msg": "a model name of 1 to 255 characters", "type": "value"}]
        )
    try:
        await req.db(_gov(req).set_fallbacks, model, body.fallbacks)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
    await _changed(req)
    return FallbackChain(model=model, fallbacks=body.fallbacks)


class ScaleToZeroSet(BaseModel):
    """A deployment's scale-to-zero policy: stop after ``idle_timeout_s`` without requests; the next
    request starts ``wake_replicas`` replicas while it is held. ``idle_timeout_s`` null removes it."""

    idle_timeout_s: float | None = Field(gt=0, le=30 * 86400)
    wake_replicas: int = Field(default=1, ge=1, le=64)


class ScaleToZeroPolicy(ScaleToZeroSet):
    """A deployment's scale-to-zero policy."""

    deployment: str


async def set_scale_to_zero(req: Request) -> ScaleToZeroPolicy:
    """Set or remove a deployment's scale-to-zero policy."""
    body: ScaleToZeroSet = req.body
    ref = req.path_params["deployment"]
    dep = await req.db(req.services.store.get_deployment, ref)
    if dep is None:
        raise not_found("deployment", ref)
    await req.db(_gov(req).set_scale_to_zero, dep.id, body.idle_timeout_s, body.wake_replicas)
    await _changed(req)
    return ScaleToZeroPolicy(
        deployment=dep.name, idle_timeout_s=body.idle_timeout_s, wake_replicas=body.wake_replicas
    )


async def usage_buckets(req: Request) -> Page:
    """Usage in hour or day buckets grouped by model, user, key and/or team; non-admins see their own."""
    caller = req.require_caller()
    q = req.query
    group_by = [g for g in (q["group_by"] or "model").split(",") if g]
    bucket = q["bucket"] or "hour"
    if bucket not in ("hour", "day"):
        raise ApiError(422, f"bucket must be 'hour' or 'day', not {bucket!r}")
    if req.services.flush_usage is not None:
        await req.services.flush_usage()
    start = None if q["from"] is None else dt.datetime.combine(q["from"], dt.time())
    end = None if q["to"] is None else dt.datetime.combine(q["to"], dt.time()) + dt.timedelta(days=1)
    try:
        rows = await req.db(
            _gov(req).usage_buckets,
            bucket,
            group_by,
            start=start,
            end=end,
            user_id=q["user_id"] if caller.is_admin else caller.user.id,
            team_id=q["team_id"],
            model=q["model"],
            key_id=q["key_id"],
        )
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
    return _list(rows)


_TEAM = "/teams/{team}"
_NO_SUBJECT = "the user, team or API key named in subject_id does not exist"
_SUBJECT_QUERY = (
    Query("subject_kind", "str", "user, team, key or global"),
    Query("subject_id", "str", "the subject's id"),
)
ENDPOINTS = (
    Endpoint("GET", "/teams", list_teams, "list teams", "governance", auth="admin", list_of=TeamRecord),
    Endpoint(
        "POST",
        "/teams",
        create_team,
        "create a team",
        "governance",
        auth="admin",
        body=TeamCreate,
        response=TeamRecord,
        status=201,
    ),
    Endpoint(
        "GET", _TEAM, get_team, "get a team (id or name)", "governance", auth="admin", response=TeamRecord
    ),
    Endpoint("DELETE", _TEAM, delete_team, "delete a team", "governance", auth="admin", status=204),
    Endpoint(
        "PUT",
        _TEAM + "/members/{user_id}",
        add_member,
        "put a user into a team",
        "governance",
        auth="admin",
        response=TeamRecord,
    ),
    Endpoint(
        "DELETE",
        _TEAM + "/members/{user_id}",
        remove_member,
        "take a user out of a team",
        "governance",
        auth="admin",
        status=204,
    ),
    Endpoint(
        "GET",
        "/model-access",
        list_access,
        "list model access rules",
        "governance",
        auth="admin",
        list_of=AccessRule,
        query=_SUBJECT_QUERY,
    ),
    Endpoint(
        "POST",
        "/model-access",
        grant_access,
        "allow a user or team to call a model",
        "governance",
        auth="admin",
        body=AccessCreate,
        response=AccessRule,
        status=201,
        errors=((404, _NO_SUBJECT),),
    ),
    Endpoint(
        "DELETE",
        "/model-access",
        revoke_access,
        "remove a model access rule",
        "governance",
        auth="admin",
        status=204,
        query=(*_SUBJECT_QUERY, Query("model", "str", "the model of the rule")),
        errors=((404, "no such access rule"),),
    ),
    Endpoint(
        "GET",
        "/limits",
        list_limits,
        "list quotas and rate limits",
        "governance",
        auth="admin",
        list_of=LimitRecord,
        query=_SUBJECT_QUERY,
    ),
    Endpoint(
        "PUT",
        "/limits",
        set_limit,
        "set a quota or rate limit",
        "governance",
        auth="admin",
        body=LimitSet,
        response=LimitRecord,
        errors=((404, _NO_SUBJECT),),
    ),
    Endpoint(
        "DELETE", "/limits/{limit_id}", delete_limit, "delete a limit", "governance", auth="admin", status=204
    ),
    Endpoint(
        "GET",
        "/fallbacks",
        list_fallbacks,
        "list fallback chains",
        "governance",
        auth="admin",
        list_of=FallbackChain,
    ),
    Endpoint(
        "PUT",
        "/fallbacks/{model:path}",
        set_fallbacks,
        "set a model's fallback chain",
        "governance",
        auth="admin",
        body=FallbackSet,
        response=FallbackChain,
    ),
    Endpoint(
        "PUT",
        "/scale-to-zero/{deployment}",
        set_scale_to_zero,
        "set a deployment's scale-to-zero policy (idle timeout, replicas on wake)",
        "governance",
        auth="admin",
        body=ScaleToZeroSet,
        response=ScaleToZeroPolicy,
    ),
    Endpoint(
        "GET",
        "/usage/buckets",
        usage_buckets,
        "usage in hour/day buckets by model, user, key, team",
        "usage",
        auth="user",
        list_of=UsageBucket,
        query=(
            Query("bucket", "str", "hour or day", "hour"),
            Query("group_by", "str", "comma-separated: model, user, key, team", "model"),
            Query("user_id", "str", "admins: this user"),
            Query("team_id", "str", "this team"),
            Query("key_id", "str", "this key"),
            Query("model", "str", "this model"),
            Query("from", "date", "first day (YYYY-MM-DD)"),
            Query("to", "date", "last day (YYYY-MM-DD)"),
        ),
    ),
)
