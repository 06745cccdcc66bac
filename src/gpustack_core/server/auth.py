"""Who is calling: API keys and login sessions (``Authorization: Bearer``) and the worker join token."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .security import hash_secret, secrets_equal, split_api_key
from .store import Store, utcnow
from .store._sql import read_retrying
from .store.records import ApiKeyRecord, UserRecord

__all__ = ["Caller", "authenticate_key", "bearer_token"]


@dataclass(frozen=True)
class Caller:
    """An authenticated user and the key (or session) they used."""

    user: UserRecord
    key: ApiKeyRecord

    @property
    def is_admin(self) -> bool:
        """The user has the admin role."""
        return self.user.role == "admin"

    @property
    def scopes(self) -> frozenset[str]:
        """Scopes of the key."""
        return frozenset(self.key.scopes)

    def may_use_model(self, model: str) -> bool:
        """The key's model allow-list admits ``model`` (no list: every model)."""
        return self.key.allowed_models is None or model in self.key.allowed_models


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate_key(store: Store, token: str, now: dt.datetime | None = None) -> Caller | None:
    """Resolve an API key or session token to its caller; ``None`` when unknown, wrong, expired
    or the user is disabled. Blocking (database): call it from a worker thread."""
    key_id = split_api_key(token)
    if key_id is None:
        return None
    found = read_retrying(store.get_key, key_id)
    if found is None:
        return None
    key, secret_hash = found
    if not secrets_equal(secret_hash, hash_secret(token)):
        return None
    if key.expires_at is not None and key.expires_at <= (now or utcnow()):
        return None
    user = read_retrying(store.get_user, key.user_id)
    if user is None or user.disabled:
        return None
    return Caller(user=user, key=key)
