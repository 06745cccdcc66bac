"""Limits on the request path: the :class:`Limiter` protocol, its answers and OpenAI's rate headers.

The gateway asks a limiter to *reserve* a request before proxying it: one request and an upper
bound of its tokens (:func:`estimate_tokens`). When any limit would be passed the limiter raises
:class:`LimitExceeded` and the client gets 429 with an OpenAI-style body and ``Retry-After``.
After the answer the gateway *settles* the reservation with the tokens the engine reported (0 when
the request failed, which releases them). Either way the answer carries OpenAI's
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests``
and the ``-tokens`` counterparts of the tightest limits that applied.

The reference server's limiter (:class:`gpustack_core.server.limiter.StoreLimiter`) keeps its
counters in the database so that several server processes enforce the same limits exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import GatewayHTTPError
from .protocols import Principal

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LimitExceeded",
    "LimitSnapshot",
    "Limiter",
    "Reservation",
    "estimate_tokens",
    "format_reset",
    "rate_limit_headers",
]

DEFAULT_MAX_TOKENS = 4096
"""The completion tokens reserved for a request that names no ``max_tokens``."""


@dataclass(frozen=True)
class LimitSnapshot:
    """The tightest request and token limits that applied to a request, after it was counted.

    ``None`` fields: no limit of that metric applied. ``reset_*_s`` is the time until the window of
    that limit ends (``None`` for a total quota, which never resets).
    """

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


@dataclass(frozen=True)
class Reservation:
    """What a limiter reserved for one request; handed back to :meth:`Limiter.settle`.

    ``tokens`` is the number of tokens reserved; ``handle`` is the limiter's own bookkeeping.
    """

    tokens: int
    snapshot: LimitSnapshot
    handle: Any = None


class LimitExceeded(Exception):
    """A limit would be passed: the request is refused with 429 and nothing was reserved.

    ``retry_after_s`` is when the blocking window ends (``None`` for a total quota); ``code`` is
    ``rate_limit_exceeded`` or ``insufficient_quota`` (OpenAI's codes).
    """

    def __init__(
        self, message: str, *, retry_after_s: float | None, code: str, snapshot: LimitSnapshot
    ) -> None:
        """Describe the refusal; ``message`` names the limit and the numbers."""
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.code = code
        self.snapshot = snapshot

    def http_error(self) -> GatewayHTTPError:
        """The 429 the client gets, with ``Retry-After`` and the rate-limit headers."""
        headers = rate_limit_headers(self.snapshot)
        if self.retry_after_s is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(self.retry_after_s))).encode()))
        return GatewayHTTPError(
            429,
            self.message,
            error_type="insufficient_quota" if self.code == "insufficient_quota" else "requests",
            code=self.code,
            headers=headers,
        )


@runtime_checkable
class Limiter(Protocol):
    """Quotas and rate limits, enforced by reservation. Called on every request: keep it fast."""

    async def reserve(self, principal: Principal, model: str, tokens: int) -> Reservation | None:
        """Count one request of up to ``tokens`` tokens for ``principal`` calling ``model``.

        Returns the reservation, ``None`` when no limit applies to this caller and model (the
        gateway then sends no rate-limit headers), or raises :class:`LimitExceeded`, reserving
        nothing, when any limit would be passed.
        """
        ...

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reserved tokens by ``used_tokens`` (0 releases them: the request failed)."""
        ...


def estimate_tokens(
    obj: dict[str, Any], body_bytes: int, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> int:
    """The tokens reserved for a JSON request: an upper bound for ordinary text.

    Completion: ``max_completion_tokens`` or ``max_tokens`` (``default_max_tokens`` when absent;
    ``n`` choices multiply it). Prompt: the body's size in bytes, since a token of text covers at
    least one byte in the tokenizers engines use (chat-template tokens are the exception, counted
    in the slack of the JSON syntax around the messages).
    """
    completion = obj.get("max_completion_tokens", obj.get("max_tokens"))
    if not isinstance(completion, int) or isinstance(completion, bool) or completion <= 0:
        completion = default_max_tokens
    n = obj.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        n = 1
    return body_bytes + completion * n


def format_reset(seconds: float) -> str:
    """OpenAI's reset duration format: ``"1s"``, ``"6m0s"``, ``"1h2m3s"``, ``"250ms"``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_limit_headers(snapshot: LimitSnapshot) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*`` headers of the limits in ``snapshot`` (none for absent metrics)."""
    out: list[tuple[bytes, bytes]] = []
    for metric, limit, remaining, reset in (
        ("requests", snapshot.limit_requests, snapshot.remaining_requests, snapshot.reset_requests_s),
        ("tokens", snapshot.limit_tokens, snapshot.remaining_tokens, snapshot.reset_tokens_s),
    ):
        if limit is None or remaining is None:
            continue
        out.append((f"x-ratelimit-limit-{metric}".encode(), str(limit).encode()))
        out.append((f"x-ratelimit-remaining-{metric}".encode(), str(max(0, remaining)).encode()))
        if reset is not None:
            out.append((f"x-ratelimit-reset-{metric}".encode(), format_reset(reset).encode()))
    return out


def tightest(
    entries: Sequence[tuple[str, int, int, float | None]],
) -> LimitSnapshot:
    """The snapshot of ``(metric, max, used_after, reset_s)`` entries: per metric, the least remaining."""
    best: dict[str, tuple[int, int, float | None]] = {}
    for metric, maximum, used, reset in entries:
        cur = best.get(metric)
        if cur is None or maximum - used < cur[0] - cur[1]:
            best[metric] = (maximum, used, reset)
    req = best.get("requests")
    tok = best.get("tokens")
    return LimitSnapshot(
        limit_requests=None if req is None else req[0],
        remaining_requests=None if req is None else req[0] - req[1],
        reset_requests_s=None if req is None else req[2],
        limit_tokens=None if tok is None else tok[0],
        remaining_tokens=None if tok is None else tok[0] - tok[1],
        reset_tokens_s=None if tok is None else tok[2],
    )
