"""Database engines for SQLite, PostgreSQL and MySQL/MariaDB, and first-start bootstrap."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..security import PasswordHashing, hash_secret, new_password, new_token
from . import migrate
from .cluster import Store

__all__ = ["Bootstrap", "bootstrap", "make_engine"]

logger = logging.getLogger(__name__)

ADMIN_PASSWORD_FILE = "initial_admin_password"
TOKEN_FILE = "token"
WORKER_TOKEN_SETTING = "worker_token_sha256"


def make_engine(url: str) -> sa.Engine:
    """A thread-safe SQLAlchemy engine for ``url``; SQLite gets WAL and a busy timeout."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: commits survive an application crash; a power loss may drop the
            # last transactions but never corrupts the database or half-applies one.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)


@dataclass(frozen=True)
class Bootstrap:
    """What the first start created (or found)."""

    admin_password_file: Path | None
    token_file: Path
    worker_token: str | None


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.chmod(path, 0o600)


def bootstrap(engine: sa.Engine, data_dir: Path, hashing: PasswordHashing) -> Bootstrap:
    """Migrate the schema, then on first start create the admin user and the worker join token.

    The admin's generated password goes to ``<data_dir>/initial_admin_password`` and the token to
    ``<data_dir>/token``, both mode 0600. Later starts reuse what is stored.
    """
    migrate.upgrade(engine)
    store = Store(engine)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password_file: Path | None = None
    if store.user_count() == 0:
        password = new_password()
        password_file = data_dir / ADMIN_PASSWORD_FILE
        _write_secret(password_file, password)
        admin = store.create_user("admin", hashing.hash(password), "admin")
        store.require_password_change(admin.id, True)
        logger.info("created user 'admin'; its password is in %s", password_file)
    token_file = data_dir / TOKEN_FILE
    stored_hash = store.get_setting(WORKER_TOKEN_SETTING)
    token: str | None = None
    if token_file.exists():
        token = token_file.read_text().strip()
        if stored_hash is None:
            store.put_setting(WORKER_TOKEN_SETTING, hash_secret(token))
        elif hash_secret(token) != stored_hash:
            logger.warning(
                "%s does not match the database's worker token; workers must use the stored one", token_file
            )
            token = None
    elif stored_hash is None:
        token = new_token()
        _write_secret(token_file, token)
        store.put_setting(WORKER_TOKEN_SETTING, hash_secret(token))
    return Bootstrap(admin_password_file=password_file, token_file=token_file, worker_token=token)
