"""Accounts part of the store: settings, users, API keys and sessions, token usage."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import schema as t
from ._sql import ConflictError, dump_json, load_json, new_id, retry_conflicts, upsert, upsert_on, utcnow
from .records import ApiKeyRecord, UsageRow, UserRecord

__all__ = ["AccountStore", "UsageCounts", "UsageKey", "usage_counter"]

#: (user id, key id or None, model, day, naive UTC start of the hour) of one usage counter
UsageKey = tuple[str, "str | None", str, dt.date, dt.datetime]
#: (prompt tokens, completion tokens, requests) added to one counter
UsageCounts = Sequence[int]

T = TypeVar("T")

#: settings key prefix of the must-change-password mark (a setting, so no schema change)
_PASSWORD_CHANGE = "password_change_required:"


class AccountStore:
    """Reads and writes of settings, users, keys and usage; each call is one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ settings

    def get_setting(self, key: str) -> str | None:
        """A stored setting, or ``None``."""
        with self.engine.connect() as c:
            return c.execute(sa.select(t.settings.c.value).where(t.settings.c.key == key)).scalar()

    def put_setting(self, key: str, value: str) -> None:
        """Insert or replace a setting."""
        s = t.settings
        upsert(self.engine, s, (s.c.key == key,), {"value": value}, {"key": key, "value": value}, key)

    def delete_setting(self, key: str) -> None:
        """Remove a setting (no error when absent)."""
        with self.engine.begin() as c:
            c.execute(t.settings.delete().where(t.settings.c.key == key))

    def password_change_required(self, user_id: str) -> bool:
        """The user must choose a new password before using the console (first admin, after a reset)."""
        return self.get_setting(_PASSWORD_CHANGE + user_id) == "1"

    def require_password_change(self, user_id: str, required: bool) -> None:
        """Set or clear the must-change-password mark of a user."""
        if required:
            self.put_setting(_PASSWORD_CHANGE + user_id, "1")
        else:
            self.delete_setting(_PASSWORD_CHANGE + user_id)

    # ------------------------------------------------------------------ users

    @staticmethod
    def _user(row: sa.Row[Any]) -> UserRecord:
        return UserRecord(
            id=row.id, username=row.username, role=row.role, disabled=row.disabled, created_at=row.created_at
        )

    def create_user(self, username: str, password_hash: str, role: str) -> UserRecord:
        """Add a user; :class:`ConflictError` when the name is taken."""
        values = dict(
            id=new_id(),
            username=username,
            password_hash=password_hash,
            role=role,
            disabled=False,
            created_at=utcnow(),
        )
        try:
            with self.engine.begin() as c:
                c.execute(t.users.insert().values(**values))
        except IntegrityError as exc:
            raise ConflictError(f"a user named {username!r} already exists") from exc
        return UserRecord(**{k: v for k, v in values.items() if k != "password_hash"})

    def user_count(self) -> int:
        """Number of users."""
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t.users)).scalar_one())

    def get_user(self, user_id: str) -> UserRecord | None:
        """A user by id."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.users).where(t.users.c.id == user_id)).first()
        return None if row is None else self._user(row)

    def get_user_login(self, username: str) -> tuple[UserRecord, str] | None:
        """A user by name with the password hash, for login."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.users).where(t.users.c.username == username)).first()
        return None if row is None else (self._user(row), row.password_hash)

    def list_users(self, limit: int, offset: int, role: str | None = None) -> tuple[list[UserRecord], int]:
        """A page of users ordered by name, and the total."""
        where = [] if role is None else [t.users.c.role == role]
        return self._page(t.users, where, t.users.c.username, limit, offset, self._user)

    def update_user(
        self,
        user_id: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> UserRecord | None:
        """Change a user's role, password or disabled flag."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled"] = disabled
        if values:
            with self.engine.begin() as c:
                c.execute(t.users.update().where(t.users.c.id == user_id).values(**values))
        return self.get_user(user_id)

    def delete_user(self, user_id: str) -> bool:
        """Delete a user and their keys."""
        with self.engine.begin() as c:
            c.execute(t.api_keys.delete().where(t.api_keys.c.user_id == user_id))
            c.execute(t.settings.delete().where(t.settings.c.key == _PASSWORD_CHANGE + user_id))
            return c.execute(t.users.delete().where(t.users.c.id == user_id)).rowcount > 0

    # ------------------------------------------------------------------ API keys and sessions

    @staticmethod
    def _key(row: sa.Row[Any]) -> ApiKeyRecord:
        allowed = load_json(row.allowed_models)
        return ApiKeyRecord(
            id=row.id,
            user_id=row.user_id,
            name=row.name,
            kind=row.kind,
            scopes=tuple(load_json(row.scopes)),
            allowed_models=None if allowed is None else tuple(allowed),
            expires_at=row.expires_at,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
        )

    def create_key(
        self,
        key_id: str,
        user_id: str,
        name: str,
        kind: str,
        secret_hash: str,
        scopes: Sequence[str],
        allowed_models: Sequence[str] | None,
        expires_at: dt.datetime | None,
    ) -> ApiKeyRecord:
        """Store a key (or session) by the hash of its secret."""
        values = dict(
            id=key_id,
            user_id=user_id,
            name=name,
            kind=kind,
            secret_hash=secret_hash,
            scopes=json.dumps(sorted(scopes)),
            allowed_models=dump_json(None if allowed_models is None else sorted(allowed_models)),
            expires_at=expires_at,
            created_at=utcnow(),
            last_used_at=None,
        )
        with self.engine.begin() as c:
            c.execute(t.api_keys.insert().values(**values))
            row = c.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).one()
        return self._key(row)

    def get_key(self, key_id: str) -> tuple[ApiKeyRecord, str] | None:
        """A key by id with its secret hash, for authentication."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        return None if row is None else (self._key(row), row.secret_hash)

    def touch_key(self, key_id: str) -> None:
        """Record that a key was used now."""
        with self.engine.begin() as c:
            c.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(last_used_at=utcnow()))

    def list_keys(
        self, limit: int, offset: int, user_id: str | None = None
    ) -> tuple[list[ApiKeyRecord], int]:
        """A page of API keys (sessions excluded), newest first."""
        where: list[Any] = [t.api_keys.c.kind == "key"]
        if user_id is not None:
            where.append(t.api_keys.c.user_id == user_id)
        return self._page(t.api_keys, where, t.api_keys.c.created_at.desc(), limit, offset, self._key)

    def delete_key(self, key_id: str) -> bool:
        """Revoke a key or session."""
        with self.engine.begin() as c:
            return c.execute(t.api_keys.delete().where(t.api_keys.c.id == key_id)).rowcount > 0

    # ------------------------------------------------------------------ usage

    def add_usage(self, row: UsageRow) -> None:
        """Add a request's tokens to the (user, key, model, day) counter (upsert-add, portable)."""
        counts = (row.prompt_tokens, row.completion_tokens, row.requests)
        where, add, new = usage_counter(
            t.usage, ("day", row.day), (row.user_id, row.key_id, row.model), counts
        )
        upsert(self.engine, t.usage, where, add, new, f"usage of {row.model!r}")

    def add_usage_batch(
        self, batch_id: str, counts: Mapping[UsageKey, UsageCounts], attempts: int = 8
    ) -> bool:
        """Add a batch of counts to the day and hour usage tables, exactly once per ``batch_id``.

        One transaction writes every row of both tables and the batch's id in ``usage_batches``.
        Call it again with the same id after any failure: when the earlier call's commit reached
        the database although its connection was lost before the answer (a killed session, a
        server restart), the id is found and nothing is added again. Returns False in that case.
        Concurrent writers of the same counters (several gateway processes) are retried like
        :func:`upsert`; after ``attempts`` tries :class:`ConflictError` says so.
        """

        def once() -> bool:
            with self.engine.begin() as c:
                c.execute(t.usage_batches.insert().values(id=batch_id, written_at=utcnow()))
                for key, row in counts.items():
                    _add_usage_counts(c, key, row)
            return True

        def written_before() -> bool | None:
            # the id (written before this try) or a concurrent insert of one counter (try again)
            return False if self.usage_batch_written(batch_id) else None

        return retry_conflicts(
            once, f"record usage batch {batch_id}", attempts=attempts, on_integrity_error=written_before
        )

    def usage_batch_written(self, batch_id: str) -> bool:
        """Whether the usage batch ``batch_id`` was written."""
        b = t.usage_batches
        with self.engine.connect() as c:
            return c.execute(sa.select(b.c.id).where(b.c.id == batch_id)).first() is not None

    def prune_usage_batches(self, older_than: dt.datetime) -> int:
        """Forget the ids of usage batches written before ``older_than``; returns how many."""
        b = t.usage_batches
        with self.engine.begin() as c:
            return c.execute(b.delete().where(b.c.written_at < older_than)).rowcount

    def query_usage(
        self,
        limit: int,
        offset: int,
        *,
        user_id: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        day_from: dt.date | None = None,
        day_to: dt.date | None = None,
    ) -> tuple[list[UsageRow], int]:
        """A page of usage rows, newest day first, filtered."""
        u = t.usage
        where: list[Any] = []
        if user_id is not None:
            where.append(u.c.user_id == user_id)
        if key_id is not None:
            where.append(u.c.key_id == key_id)
        if model is not None:
            where.append(u.c.model == model)
        if day_from is not None:
            where.append(u.c.day >= day_from)
        if day_to is not None:
            where.append(u.c.day <= day_to)

        def convert(r: sa.Row[Any]) -> UsageRow:
            return UsageRow(
                user_id=r.user_id,
                key_id=r.key_id or None,
                model=r.model,
                day=r.day,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                requests=r.requests,
            )

        return self._page(
            u, where, (u.c.day.desc(), u.c.model, u.c.user_id, u.c.key_id), limit, offset, convert
        )

    # ------------------------------------------------------------------ helpers

    def _page(
        self,
        table: sa.Table,
        where: Sequence[Any],
        order: Any,
        limit: int,
        offset: int,
        convert: Callable[[sa.Row[Any]], T],
    ) -> tuple[list[T], int]:
        orders = order if isinstance(order, tuple) else (order,)
        with self.engine.connect() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
            rows = c.execute(
                sa.select(table).where(*where).order_by(*orders).limit(limit).offset(offset)
            ).fetchall()
        return [convert(r) for r in rows], int(total)


def usage_counter(
    table: sa.Table, when: tuple[str, Any], key: tuple[str, str | None, str], counts: Sequence[int]
) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """The ``where``, update and insert of an upsert-add of ``counts`` (prompt, completion,
    requests) to one usage counter: ``table`` is ``usage`` (``when`` = ``("day", date)``) or
    ``usage_hourly`` (``("hour", start)``); ``key`` is (user id, key id or None, model)."""
    (column, value), (user_id, key_id, model) = when, key
    prompt, completion, requests = counts
    where = (
        table.c.user_id == user_id,
        table.c.key_id == (key_id or ""),
        table.c.model == model,
        table.c[column] == value,
    )
    add = dict(
        prompt_tokens=table.c.prompt_tokens + prompt,
        completion_tokens=table.c.completion_tokens + completion,
        requests=table.c.requests + requests,
    )
    new = dict(
        user_id=user_id,
        key_id=key_id or "",
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        requests=requests,
        **{column: value},
    )
    return where, add, new


def _add_usage_counts(c: sa.Connection, key: UsageKey, counts: UsageCounts) -> None:
    """Upsert-add one batch row into ``usage`` (its day) and ``usage_hourly`` (its hour) on ``c``."""
    user_id, key_id, model, day, hour = key
    hour = hour.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    upsert_on(c, t.usage, *usage_counter(t.usage, ("day", day), (user_id, key_id, model), counts))
    upsert_on(
        c, t.usage_hourly, *usage_counter(t.usage_hourly, ("hour", hour), (user_id, key_id, model), counts)
    )
