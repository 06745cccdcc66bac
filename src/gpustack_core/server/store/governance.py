"""Governance part of the store: teams, model access, limits and their counters, fallbacks, usage buckets.

Limit counters are reserved with conditional row updates (``used = used + n WHERE used + n <= max``)
inside one transaction per request, locking counter rows in a fixed order, so that several server
processes on one PostgreSQL or MySQL database (or threads on SQLite) never pass a limit together.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import schema as t
from ._sql import ConflictError, new_id, retry_conflicts, upsert, utcnow
from .accounts import usage_counter
from .records import _Record  # frozen; timestamps serialised as UTC with their offset

__all__ = [
    "AccessRule",
    "CounterClaim",
    "GovernanceStore",
    "LimitBlocked",
    "LimitRecord",
    "Metric",
    "Period",
    "SubjectKind",
    "TeamRecord",
    "UsageBucket",
    "window_of",
]

SubjectKind = Literal["user", "team", "key", "global"]
Metric = Literal["tokens", "requests"]
Period = Literal["minute", "hour", "day", "month", "total"]

_FIXED = {"minute": 60, "hour": 3600, "day": 86400}


def window_of(period: str, now: float) -> tuple[int, float | None]:
    """``(window start, seconds until it ends)`` of ``period`` at epoch time ``now`` (UTC).

    Windows are fixed and aligned: minutes, hours and days start on the UTC clock, months on the
    first day; ``total`` is one window that never ends (start 0, ``None``).
    """
    if period == "total":
        return 0, None
    size = _FIXED.get(period)
    if size is not None:
        start = int(now // size) * size
        return start, start + size - now
    if period != "month":
        raise ValueError(f"unknown period {period!r}")
    day = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    first = dt.datetime(day.year, day.month, 1, tzinfo=dt.timezone.utc)
    nxt = dt.datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return calendar.timegm(first.timetuple()), nxt.timestamp() - now


class TeamRecord(_Record):
    """A team: users in it share its model access and its limits."""

    id: str
    name: str
    description: str
    created_at: dt.datetime
    members: tuple[str, ...] = ()
    """User ids."""


class AccessRule(_Record):
    """A user or team may call ``model`` (``*``: every model)."""

    subject_kind: Literal["user", "team"]
    subject_id: str
    model: str


class LimitRecord(_Record):
    """A quota or rate limit: at most ``max_value`` ``metric`` per ``period`` for a subject and model.

    ``subject_kind`` ``global`` (``subject_id`` ``""``) counts every caller together; ``model``
    ``""`` counts every model. A team's limit counts its members together.
    """

    id: str
    subject_kind: SubjectKind
    subject_id: str
    model: str
    metric: Metric
    period: Period
    max_value: int
    created_at: dt.datetime


class UsageBucket(_Record):
    """Usage in one time bucket (``start``: naive UTC), for the grouped-by fields (others ``None``)."""

    start: dt.datetime
    model: str | None = None
    user_id: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    prompt_tokens: int
    completion_tokens: int
    requests: int


@dataclass(frozen=True)
class CounterClaim:
    """Add ``amount`` to the counter of ``limit_id`` in window ``window_start``, up to ``max_value``."""

    limit_id: str
    window_start: int
    max_value: int
    amount: int


class LimitBlocked(Exception):
    """A claim would pass its limit; nothing was reserved. ``index`` is the claim, ``used`` its counter."""

    def __init__(self, index: int, used: int) -> None:
        super().__init__(f"claim {index} would pass its limit (used {used})")
        self.index = index
        self.used = used


class GovernanceStore:
    """Reads and writes of teams, access rules, limits, counters, fallbacks and usage buckets."""

    def __init__(self, engine: sa.Engine) -> None:
        """Work on ``engine`` (migrated to revision ``0002_governance`` or later)."""
        self.engine = engine

    # ------------------------------------------------------------------ teams

    def create_team(self, name: str, description: str = "") -> TeamRecord:
        """Add a team; :class:`ConflictError` when the name is taken."""
        values = dict(id=new_id(), name=name, description=description, created_at=utcnow())
        try:
            with self.engine.begin() as c:
                c.execute(t.teams.insert().values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"a team named {name!r} already exists") from exc
        return TeamRecord(**values)

    def list_teams(self) -> list[TeamRecord]:
        """Every team with its members, by name."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.teams).order_by(t.teams.c.name)).fetchall()
            members = c.execute(sa.select(t.team_members)).fetchall()
        by_team: dict[str, list[str]] = {}
        for m in members:
            by_team.setdefault(m.team_id, []).append(m.user_id)
        return [
            TeamRecord(
                id=r.id,
                name=r.name,
                description=r.description,
                created_at=r.created_at,
                members=tuple(sorted(by_team.get(r.id, ()))),
            )
            for r in rows
        ]

    def get_team(self, id_or_name: str) -> TeamRecord | None:
        """A team by id or name."""
        for team in self.list_teams():
            if id_or_name in (team.id, team.name):
                return team
        return None

    def delete_team(self, team_id: str) -> bool:
        """Delete a team, its memberships, access rules and limits."""
        with self.engine.begin() as c:
            c.execute(t.team_members.delete().where(t.team_members.c.team_id == team_id))
            c.execute(
                t.model_access.delete().where(
                    t.model_access.c.subject_kind == "team", t.model_access.c.subject_id == team_id
                )
            )
            c.execute(
                t.limits.delete().where(t.limits.c.subject_kind == "team", t.limits.c.subject_id == team_id)
            )
            return c.execute(t.teams.delete().where(t.teams.c.id == team_id)).rowcount > 0

    def add_member(self, team_id: str, user_id: str) -> None:
        """Put a user into a team (no-op when already in it)."""
        m = t.team_members
        try:
            with self.engine.begin() as c:
                c.execute(m.insert().values(team_id=team_id, user_id=user_id))
        except IntegrityError:
            with self.engine.connect() as c:
                found = c.execute(
                    sa.select(m.c.user_id).where(m.c.team_id == team_id, m.c.user_id == user_id)
                ).first()
            if found is None:
                raise ConflictError(f"no such team {team_id!r} or user {user_id!r}") from None

    def remove_member(self, team_id: str, user_id: str) -> bool:
        """Take a user out of a team."""
        m = t.team_members
        with self.engine.begin() as c:
            return c.execute(m.delete().where(m.c.team_id == team_id, m.c.user_id == user_id)).rowcount > 0

    def teams_of(self, user_id: str) -> frozenset[str]:
        """The ids of the user's teams."""
        m = t.team_members
        with self.engine.connect() as c:
            return frozenset(c.execute(sa.select(m.c.team_id).where(m.c.user_id == user_id)).scalars())

    def set_user_teams(self, user_id: str, team_ids: Sequence[str]) -> None:
        """Make ``team_ids`` exactly the user's teams (used by single sign-on)."""
        m = t.team_members
        with self.engine.begin() as c:
            c.execute(m.delete().where(m.c.user_id == user_id))
            for team_id in sorted(set(team_ids)):
                c.execute(m.insert().values(team_id=team_id, user_id=user_id))

    # ------------------------------------------------------------------ model access

    def grant(self, subject_kind: str, subject_id: str, model: str) -> AccessRule:
        """Allow a user or team to call ``model`` (``*``: every model)."""
        a = t.model_access
        key = (a.c.subject_kind == subject_kind, a.c.subject_id == subject_id, a.c.model == model)
        values = dict(subject_kind=subject_kind, subject_id=subject_id, model=model)
        upsert(self.engine, a, key, values, values, f"access to {model!r}")
        return AccessRule.model_validate(values)

    def revoke(self, subject_kind: str, subject_id: str, model: str) -> bool:
        """Remove one access rule."""
        a = t.model_access
        with self.engine.begin() as c:
            return (
                c.execute(
                    a.delete().where(
                        a.c.subject_kind == subject_kind, a.c.subject_id == subject_id, a.c.model == model
                    )
                ).rowcount
                > 0
            )

    def list_access(self, subject_kind: str | None = None, subject_id: str | None = None) -> list[AccessRule]:
        """Access rules, optionally of one subject."""
        a = t.model_access
        where: list[Any] = []
        if subject_kind is not None:
            where.append(a.c.subject_kind == subject_kind)
        if subject_id is not None:
            where.append(a.c.subject_id == subject_id)
        with self.engine.connect() as c:
            rows = c.execute(sa.select(a).where(*where).order_by(a.c.subject_kind, a.c.subject_id, a.c.model))
            return [
                AccessRule(subject_kind=r.subject_kind, subject_id=r.subject_id, model=r.model) for r in rows
            ]

    def allowed_models(self, user_id: str, team_ids: frozenset[str]) -> frozenset[str] | None:
        """The models a user may call through their own and their teams' rules; ``None``: every model.

        No rule on the user or any of their teams: every model. Otherwise the union of the models
        granted to them (a ``*`` rule grants every model).
        """
        a = t.model_access
        subjects = sa.or_(
            sa.and_(a.c.subject_kind == "user", a.c.subject_id == user_id),
            sa.and_(a.c.subject_kind == "team", a.c.subject_id.in_(sorted(team_ids))),
        )
        with self.engine.connect() as c:
            models = set(c.execute(sa.select(a.c.model).where(subjects)).scalars())
        if not models or "*" in models:
            return None
        return frozenset(models)

    # ------------------------------------------------------------------ limits

    @staticmethod
    def _limit(r: sa.Row[Any]) -> LimitRecord:
        return LimitRecord(
            id=r.id,
            subject_kind=r.subject_kind,
            subject_id=r.subject_id,
            model=r.model,
            metric=r.metric,
            period=r.period,
            max_value=r.max_value,
            created_at=r.created_at,
        )

    def set_limit(
        self, subject_kind: str, subject_id: str, model: str, metric: str, period: str, max_value: int
    ) -> LimitRecord:
        """Create the limit, or change the maximum of the one with the same subject, model, metric, period."""
        if max_value < 0:
            raise ValueError("a limit's maximum must be 0 or more")
        window_of(period, 0)  # validates the period
        lim = t.limits
        key = (
            lim.c.subject_kind == subject_kind,
            lim.c.subject_id == subject_id,
            lim.c.model == model,
            lim.c.metric == metric,
            lim.c.period == period,
        )
        new = dict(
            id=new_id(),
            subject_kind=subject_kind,
            subject_id=subject_id,
            model=model,
            metric=metric,
            period=period,
            max_value=max_value,
            created_at=utcnow(),
        )
        upsert(self.engine, lim, key, {"max_value": max_value}, new, "a limit")
        with self.engine.connect() as c:
            return self._limit(c.execute(sa.select(lim).where(*key)).one())

    def list_limits(
        self, subject_kind: str | None = None, subject_id: str | None = None
    ) -> list[LimitRecord]:
        """Limits, optionally of one subject."""
        lim = t.limits
        where: list[Any] = []
        if subject_kind is not None:
            where.append(lim.c.subject_kind == subject_kind)
        if subject_id is not None:
            where.append(lim.c.subject_id == subject_id)
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(lim)
                .where(*where)
                .order_by(lim.c.subject_kind, lim.c.subject_id, lim.c.model, lim.c.id)
            )
            return [self._limit(r) for r in rows]

    def delete_limit(self, limit_id: str) -> bool:
        """Delete a limit and its counters."""
        with self.engine.begin() as c:
            c.execute(t.limit_counters.delete().where(t.limit_counters.c.limit_id == limit_id))
            return c.execute(t.limits.delete().where(t.limits.c.id == limit_id)).rowcount > 0

    def counter(self, limit_id: str, window_start: int) -> int:
        """The amount counted against a limit in one window (0 when nothing was)."""
        lc = t.limit_counters
        with self.engine.connect() as c:
            used = c.execute(
                sa.select(lc.c.used).where(lc.c.limit_id == limit_id, lc.c.window_start == window_start)
            ).scalar()
        return int(used or 0)

    def reserve(self, claims: Sequence[CounterClaim]) -> list[int]:
        """Add every claim to its counter in one transaction, or none of them.

        Returns each counter's value after the claim; raises :class:`LimitBlocked` (nothing
        reserved) when a claim would take its counter past its maximum. Counter rows are locked
        in ``(limit_id, window_start)`` order, so concurrent reservations never deadlock.
        """
        if self.engine.dialect.name == "postgresql" and claims:
            done = self._reserve_in_one_statement(claims)
            if done is not None:
                return done
        order = sorted(range(len(claims)), key=lambda i: (claims[i].limit_id, claims[i].window_start))
        lc = t.limit_counters
        returning = bool(self.engine.dialect.update_returning)

        def attempt() -> list[int]:
            after = [0] * len(claims)
            with self.engine.begin() as c:
                for i in order:
                    cl = claims[i]
                    where = (lc.c.limit_id == cl.limit_id, lc.c.window_start == cl.window_start)
                    update = (
                        lc.update()
                        .where(*where, lc.c.used + cl.amount <= cl.max_value)
                        .values(used=lc.c.used + cl.amount)
                    )
                    if returning:  # one round trip (SQLite, PostgreSQL)
                        row = c.execute(update.returning(lc.c.used)).first()
                        if row is not None:
                            after[i] = int(row.used)
                            continue
                        done = 0
                    else:
                        done = c.execute(update).rowcount
                    used = c.execute(sa.select(lc.c.used).where(*where)).scalar()
                    if done:
                        after[i] = int(used or 0)
                    elif used is None and cl.amount <= cl.max_value:
                        c.execute(
                            lc.insert().values(
                                limit_id=cl.limit_id, window_start=cl.window_start, used=cl.amount
                            )
                        )
                        after[i] = cl.amount
                    else:
                        raise LimitBlocked(i, int(used or 0))
            return after

        result: list[int] = retry_conflicts(attempt, "reserve limit counters", attempts=12, backoff_s=0.002)
        return result

    def _reserve_in_one_statement(self, claims: Sequence[CounterClaim]) -> list[int] | None:
        """PostgreSQL: every claim in one autocommitted statement, or ``None`` (nothing reserved)
        when a counter row is missing or a claim does not fit; :meth:`reserve`'s transaction then
        inserts the rows or says which claim is blocked.

        The statement locks the claimed rows in ``(limit_id, window_start)`` order (``FOR
        UPDATE``, which reads their newest committed values), checks that every claim fits, and
        adds them; the locks last only as long as the statement (no client round trip while they
        are held), which is what lets one key's concurrent requests through quickly.
        """
        params: dict[str, Any] = {"n": len(claims)}
        rows = []
        for i, cl in enumerate(claims):
            rows.append(
                f"(CAST(:i{i} AS integer), CAST(:l{i} AS varchar), CAST(:w{i} AS bigint), "
                f"CAST(:a{i} AS bigint), CAST(:m{i} AS bigint))"
            )
            params.update(
                {
                    f"i{i}": i,
                    f"l{i}": cl.limit_id,
                    f"w{i}": cl.window_start,
                    f"a{i}": cl.amount,
                    f"m{i}": cl.max_value,
                }
            )
        table = t.limit_counters.name
        statement = sa.text(
            f"WITH claim(i, limit_id, window_start, amount, max_value) AS (VALUES {', '.join(rows)}), "
            f"locked AS MATERIALIZED (SELECT lc.limit_id, lc.window_start, lc.used FROM {table} lc "
            "JOIN claim c ON lc.limit_id = c.limit_id AND lc.window_start = c.window_start "
            "ORDER BY lc.limit_id, lc.window_start FOR UPDATE OF lc), "
            "fits AS MATERIALIZED (SELECT count(*) = :n "
            "AND coalesce(bool_and(k.used + c.amount <= c.max_value), false) AS ok "
            "FROM locked k JOIN claim c "
            "ON k.limit_id = c.limit_id AND k.window_start = c.window_start) "
            f"UPDATE {table} lc SET used = lc.used + c.amount FROM claim c, fits "
            "WHERE fits.ok AND lc.limit_id = c.limit_id AND lc.window_start = c.window_start "
            "RETURNING c.i, lc.used"
        )

        def attempt() -> list[int] | None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                got = c.execute(statement, params).fetchall()
            if len(got) != len(claims):
                return None
            after = [0] * len(claims)
            for r in got:
                after[int(r.i)] = int(r.used)
            return after

        result: list[int] | None = retry_conflicts(
            attempt, "reserve limit counters", attempts=12, backoff_s=0.002
        )
        return result

    def adjust(self, changes: Sequence[tuple[str, int, int]]) -> None:
        """Add ``delta`` to each ``(limit_id, window_start, delta)`` counter (settling a reservation)."""
        lc = t.limit_counters
        todo = sorted(ch for ch in changes if ch[2] != 0)
        if not todo:
            return
        if self.engine.dialect.name == "postgresql":
            self._adjust_in_one_statement(todo)
            return

        def attempt() -> None:
            with self.engine.begin() as c:
                for limit_id, window_start, delta in todo:
                    c.execute(
                        lc.update()
                        .where(lc.c.limit_id == limit_id, lc.c.window_start == window_start)
                        .values(used=lc.c.used + delta)
                    )

        retry_conflicts(attempt, "settle limit counters", attempts=12, backoff_s=0.002)

    def _adjust_in_one_statement(self, todo: Sequence[tuple[str, int, int]]) -> None:
        """PostgreSQL: :meth:`adjust` in one autocommitted statement, rows locked in
        ``(limit_id, window_start)`` order like :meth:`_reserve_in_one_statement` (no deadlock)."""
        params: dict[str, Any] = {}
        rows = []
        for i, (limit_id, window_start, delta) in enumerate(todo):
            rows.append(f"(CAST(:l{i} AS varchar), CAST(:w{i} AS bigint), CAST(:d{i} AS bigint))")
            params.update({f"l{i}": limit_id, f"w{i}": window_start, f"d{i}": delta})
        table = t.limit_counters.name
        statement = sa.text(
            f"WITH change(limit_id, window_start, delta) AS (VALUES {', '.join(rows)}), "
            f"locked AS MATERIALIZED (SELECT lc.limit_id FROM {table} lc "
            "JOIN change d ON lc.limit_id = d.limit_id AND lc.window_start = d.window_start "
            "ORDER BY lc.limit_id, lc.window_start FOR UPDATE OF lc), "
            "held AS MATERIALIZED (SELECT count(*) AS n FROM locked) "
            f"UPDATE {table} lc SET used = lc.used + d.delta FROM change d, held "
            "WHERE held.n >= 0 AND lc.limit_id = d.limit_id AND lc.window_start = d.window_start"
        )

        def attempt() -> None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(statement, params)

        retry_conflicts(attempt, "settle limit counters", attempts=12, backoff_s=0.002)

    def prune_counters(self, before_epoch: int) -> int:
        """Delete counters of windows that started before ``before_epoch`` (never the ``total`` ones)."""
        lc = t.limit_counters
        with self.engine.begin() as c:
            return int(
                c.execute(lc.delete().where(lc.c.window_start > 0, lc.c.window_start < before_epoch)).rowcount
            )

    # ------------------------------------------------------------------ fallbacks

    def set_fallbacks(self, model: str, fallbacks: Sequence[str]) -> None:
        """Replace the fallback chain of ``model`` (empty: none)."""
        if model in fallbacks:
            raise ValueError(f"model {model!r} cannot be its own fallback")
        f = t.model_fallbacks
        with self.engine.begin() as c:
            c.execute(f.delete().where(f.c.model == model))
            for i, other in enumerate(fallbacks):
                c.execute(f.insert().values(model=model, priority=i, fallback=other))

    def all_fallbacks(self) -> dict[str, tuple[str, ...]]:
        """Every fallback chain, by model."""
        f = t.model_fallbacks
        out: dict[str, list[str]] = {}
        with self.engine.connect() as c:
            for r in c.execute(sa.select(f).order_by(f.c.model, f.c.priority)):
                out.setdefault(r.model, []).append(r.fallback)
        return {k: tuple(v) for k, v in out.items()}

    # ------------------------------------------------------------------ scale to zero

    def set_scale_to_zero(
        self, deployment_id: str, idle_timeout_s: float | None, wake_replicas: int = 1
    ) -> None:
        """Let a deployment stop after ``idle_timeout_s`` without requests and start ``wake_replicas``
        replicas on the next one (``None`` removes the policy)."""
        z = t.scale_to_zero
        if idle_timeout_s is None:
            with self.engine.begin() as c:
                c.execute(z.delete().where(z.c.deployment_id == deployment_id))
            return
        values = {"idle_timeout_s": idle_timeout_s, "wake_replicas": wake_replicas}
        upsert(
            self.engine, z, (z.c.deployment_id == deployment_id,), values,
            {"deployment_id": deployment_id, **values}, "a scale-to-zero policy",
        )  # fmt: skip

    def scale_to_zero_policies(self) -> list[tuple[str, str, int, float, int]]:
        """``(deployment id, public model name, replicas now, idle timeout, wake replicas)`` of every
        deployment with a policy (deployments being deleted left out)."""
        z, d = t.scale_to_zero, t.deployments
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(d.c.id, d.c.name, d.c.spec, d.c.replicas, z.c.idle_timeout_s, z.c.wake_replicas)
                .join(z, z.c.deployment_id == d.c.id)
                .where(d.c.deleting == sa.false())
            ).fetchall()
        out = []
        for r in rows:
            served = json.loads(r.spec).get("served_model_name") or r.name
            out.append((r.id, served, int(r.replicas), float(r.idle_timeout_s), int(r.wake_replicas)))
        return out

    def set_replicas_if(self, deployment_id: str, expected: int, replicas: int) -> bool:
        """Set a deployment's replicas (column and spec) only while it still has ``expected``
        (compare-and-set: of several servers deciding at once, one wins)."""
        d = t.deployments
        with self.engine.begin() as c:
            row = c.execute(sa.select(d.c.spec, d.c.replicas).where(d.c.id == deployment_id)).first()
            if row is None or row.replicas != expected:
                return False
            spec = json.loads(row.spec)
            spec["replicas"] = replicas
            return (
                c.execute(
                    d.update()
                    .where(d.c.id == deployment_id, d.c.replicas == expected, d.c.spec == row.spec)
                    .values(spec=json.dumps(spec), replicas=replicas, updated_at=utcnow())
                ).rowcount
                == 1
            )

    # ------------------------------------------------------------------ usage buckets

    def add_hourly_usage(
        self,
        user_id: str,
        key_id: str | None,
        model: str,
        hour: dt.datetime,
        prompt: int,
        completion: int,
        requests: int,
    ) -> None:
        """Add to the (user, key, model, hour) usage counter."""
        hour = hour.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        counts = (prompt, completion, requests)
        where, add, new = usage_counter(t.usage_hourly, ("hour", hour), (user_id, key_id, model), counts)
        upsert(self.engine, t.usage_hourly, where, add, new, f"hourly usage of {model!r}")

    def usage_buckets(
        self,
        bucket: Literal["hour", "day"],
        group_by: Sequence[str],
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        user_id: str | None = None,
        team_id: str | None = None,
        model: str | None = None,
        key_id: str | None = None,
    ) -> list[UsageBucket]:
        """Usage summed per hour or day bucket and per ``group_by`` fields (model, user, key, team).

        Buckets come from the hourly table (days are whole UTC days of hours); ``team`` groups by
        the teams users are in now (a user in two teams counts in both). ``end`` is exclusive.
        """
        unknown = set(group_by) - {"model", "user", "key", "team"}
        if unknown:
            raise ValueError(f"cannot group usage by {sorted(unknown)}; use model, user, key or team")
        u, m = t.usage_hourly, t.team_members
        query = sa.select(
            u.c.hour,
            u.c.model,
            u.c.user_id,
            u.c.key_id,
            u.c.prompt_tokens,
            u.c.completion_tokens,
            u.c.requests,
        )
        with_team = "team" in group_by or team_id is not None
        if with_team:
            query = query.add_columns(m.c.team_id).join(m, m.c.user_id == u.c.user_id)
        if start is not None:
            query = query.where(u.c.hour >= start)
        if end is not None:
            query = query.where(u.c.hour < end)
        if user_id is not None:
            query = query.where(u.c.user_id == user_id)
        if model is not None:
            query = query.where(u.c.model == model)
        if key_id is not None:
            query = query.where(u.c.key_id == key_id)
        if team_id is not None:
            query = query.where(m.c.team_id == team_id)
        sums: dict[tuple[Any, ...], list[int]] = {}
        with self.engine.connect() as c:
            for r in c.execute(query):
                when = r.hour if bucket == "hour" else r.hour.replace(hour=0)
                key = (
                    when,
                    r.model if "model" in group_by else None,
                    r.user_id if "user" in group_by else None,
                    (r.key_id or None) if "key" in group_by else None,
                    r.team_id if "team" in group_by else None,
                )
                acc = sums.setdefault(key, [0, 0, 0])
                acc[0] += r.prompt_tokens
                acc[1] += r.completion_tokens
                acc[2] += r.requests
        return [
            UsageBucket(
                start=k[0],
                model=k[1],
                user_id=k[2],
                key_id=k[3],
                team_id=k[4],
                prompt_tokens=v[0],
                completion_tokens=v[1],
                requests=v[2],
            )
            for k, v in sorted(sums.items(), key=lambda kv: tuple("" if x is None else str(x) for x in kv[0]))
        ]
