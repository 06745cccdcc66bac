"""Pieces every part of the store shares: ids, timestamps, JSON columns and a portable upsert."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

T = TypeVar("T")

__all__ = [
    "ConflictError",
    "connection_lost",
    "dump_json",
    "is_transient",
    "load_json",
    "new_id",
    "read_retrying",
    "retry_conflicts",
    "upsert",
    "upsert_on",
    "utcnow",
]


class ConflictError(Exception):
    """A write lost a race or broke a uniqueness rule; the message says which."""


def utcnow() -> dt.datetime:
    """Naive UTC now, as stored in the database (whole seconds, as MySQL keeps them)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def new_id() -> str:
    """A new random id."""
    return str(uuid.uuid4())


def load_json(text: str | None) -> Any:
    """A JSON column's value (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)


def dump_json(value: Any) -> str | None:
    """The text stored in a JSON column: keys sorted, ``None`` stays ``None``."""
    return None if value is None else json.dumps(value, sort_keys=True)


_MYSQL_TRANSIENT = frozenset({1205, 1213})  # lock wait timeout, deadlock
_SQLSTATE_TRANSIENT = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected


def is_transient(exc: DBAPIError) -> bool:
    """A failure the database asks to retry: a deadlock, lock timeout or serialization failure.

    InnoDB (MySQL, MariaDB) reports a deadlock when two transactions each insert into a gap the
    other locked by a read (as update-then-insert does for two new keys next to each other);
    PostgreSQL reports serialization failures; SQLite says "database is locked".
    """
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_TRANSIENT:
        return True
    if getattr(orig, "sqlstate", None) in _SQLSTATE_TRANSIENT:
        return True
    return "database is locked" in str(orig)


def connection_lost(exc: BaseException) -> bool:
    """The database connection went away under a statement (server restart, killed session)."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def read_retrying(func: Callable[..., T], *args: Any, attempts: int = 3, **kwargs: Any) -> T:
    """Call a read-only store function, again on a fresh connection when its connection was lost.

    Only for reads: a write whose connection died during its commit may have been applied.
    """
    for attempt in range(attempts):
        try:
            return func(*args, **kwargs)
        except DBAPIError as exc:
            if not connection_lost(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def upsert_on(
    c: sa.Connection,
    table: sa.Table,
    where: Sequence[Any],
    update: Mapping[str, Any],
    insert: Mapping[str, Any],
) -> None:
    """Update the row ``where`` selects, or insert it, on ``c`` (in the caller's transaction).

    A concurrent insert of the same key raises ``IntegrityError``; the caller retries the whole
    transaction (PostgreSQL aborts it), as :func:`upsert` does.
    """
    if c.execute(table.update().where(*where).values(**update)).rowcount == 0:
        c.execute(table.insert().values(**insert))


def retry_conflicts(
    fn: Callable[[], T],
    what: str,
    *,
    attempts: int = 8,
    backoff_s: float = 0.005,
    on_integrity_error: Callable[[], T | None] | None = None,
) -> T:
    """``fn()`` (one transaction per call), tried again when a concurrent insert of the same key
    won (``IntegrityError``: the next try's update finds the row) and when the database reports a
    deadlock or serialization failure (after a random sleep of up to ``backoff_s * 2**try``, the
    exponent capped at 6). After an ``IntegrityError``, ``on_integrity_error`` (if given) is asked
    first: an answer other than None is returned instead of trying again. After ``attempts``
    tries, :class:`ConflictError` says what could not be written (``what``).
    """
    for attempt in range(attempts):
        try:
            return fn()
        except IntegrityError:
            if on_integrity_error is not None:
                settled = on_integrity_error()
                if settled is not None:
                    return settled
            continue
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            time.sleep(random.uniform(0, backoff_s * 2 ** min(attempt, 6)))
    raise ConflictError(f"could not {what} after {attempts} attempts (concurrent writers)")


def upsert(
    engine: sa.Engine,
    table: sa.Table,
    where: Sequence[Any],
    update: Mapping[str, Any],
    insert: Mapping[str, Any],
    what: str,
    attempts: int = 8,
) -> None:
    """Update the row ``where`` selects, or insert it; portable, in one transaction per try,
    retried as :func:`retry_conflicts` says (``what`` names the row in its error)."""

    def once() -> None:
        with engine.begin() as c:
            upsert_on(c, table, where, update, insert)

    retry_conflicts(once, f"record {what}", attempts=attempts)
