"""Secrets: password hashing (argon2id, memory-hard), API keys and tokens, and the login rate limiter.

API keys look like ``gpsk_<key id>_<secret>``; only the SHA-256 of the whole key is stored (the key
has 256 bits of entropy, so a fast hash is enough). Passwords are hashed with argon2id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "KEY_PREFIX",
    "LoginRateLimiter",
    "PasswordHashing",
    "hash_secret",
    "new_api_key",
    "new_password",
    "new_token",
    "secrets_equal",
    "split_api_key",
]

KEY_PREFIX = "gpsk"


class PasswordHashing:
    """Argon2id hashing of user passwords; one instance per application (no module state)."""

    def __init__(self, time_cost: int = 2, memory_cost_kib: int = 19 * 1024) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=1)
        self._dummy: str | None = None

    def verify_unknown_user(self, password: str) -> bool:
        """Spend the time of one verification when the user does not exist; always ``False``.

        Without it a login for an unknown name answers without hashing, and the time tells an
        attacker which names exist.
        """
        if self._dummy is None:
            self._dummy = self._hasher.hash(new_token())
        self.verify(self._dummy, password)
        return False

    def hash(self, password: str) -> str:
        """The encoded argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, encoded: str, password: str) -> bool:
        """``True`` when ``password`` matches ``encoded``; never raises for a mismatch or a bad hash."""
        try:
            return self._hasher.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a high-entropy secret (API keys, session tokens, the worker join token)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token."""
    return secrets.token_urlsafe(nbytes)


def new_password() -> str:
    """A generated password for the first admin user (about 120 bits)."""
    return secrets.token_urlsafe(15)


def new_api_key() -> tuple[str, str]:
    """A new key as ``(key_id, full key)``; the full key is shown once and never stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def split_api_key(token: str) -> str | None:
    """The key id of a ``gpsk_<id>_<secret>`` token, or ``None`` when it does not have that shape."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1]


@dataclass
class LoginRateLimiter:
    """Failed logins per (username, client address): at most ``max_failures`` within ``window_s``.

    Memory is bounded: pairs whose failures all left the window are pruned as new failures come
    in, and past ``max_tracked`` pairs the oldest are dropped first. Lives on ``app.state``; two
    applications in one process do not share it.
    """

    max_failures: int = 5
    window_s: float = 300.0
    max_tracked: int = 100_000
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _next_prune: float = 0.0

    def __len__(self) -> int:
        """How many (username, client) pairs are tracked."""
        return len(self._failures)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def prune(self, now: float | None = None) -> None:
        """Forget every pair whose failures have all left the window."""
        now = time.monotonic() if now is None else now
        stale = [key for key, times in self._failures.items() if not times or now - times[-1] > self.window_s]
        for key in stale:
            del self._failures[key]

    def retry_after(self, username: str, client: str, now: float | None = None) -> float | None:
        """Seconds until another attempt is allowed, or ``None`` when one is allowed now."""
        now = time.monotonic() if now is None else now
        times = self._recent((username, client), now)
        if times is None or len(times) < self.max_failures:
            return None
        return max(0.0, self.window_s - (now - times[0]))

    def failed(self, username: str, client: str, now: float | None = None) -> None:
        """Record one failed attempt."""
        now = time.monotonic() if now is None else now
        if now >= self._next_prune:
            self.prune(now)
            self._next_prune = now + min(self.window_s / 2, 60.0)
        key = (username, client)
        times = self._recent(key, now)
        if times is None:
            while len(self._failures) >= self.max_tracked:
                del self._failures[next(iter(self._failures))]  # the oldest pair first
            times = self._failures[key] = deque(maxlen=self.max_failures)
        times.append(now)

    def succeeded(self, username: str, client: str) -> None:
        """Forget the failures of this pair after a successful login."""
        self._failures.pop((username, client), None)
